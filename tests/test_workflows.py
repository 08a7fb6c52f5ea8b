"""The CI rules zizmor cannot know (README, "CI on a self-hosted runner"): a job on our
self-hosted runner runs as root on our machine, so it never runs a fork's code, and every such
job, in both workflows, queues in the one lab concurrency group. zizmor (make lint) checks the
generic rules: SHA pins, image digests, persisted credentials, permissions."""
import glob
import os

import pytest
import yaml

from conftest import REPO

WORKFLOWS = sorted(glob.glob(os.path.join(REPO, ".github/workflows/*.yml")))
LAB_GROUP = "homeops-lab-self-hosted"
# The conditions that keep a fork's code off our runner, per triggering event.
FORK_GUARDS = {
    "pull_request": "github.event.pull_request.head.repo.full_name == github.repository",
    "push": "!github.event.repository.fork",
}
# Events whose run has a writable token or secrets in our repository's context while it can
# check out a fork's code: never on these workflows.
FORBIDDEN_EVENTS = {"pull_request_target", "workflow_run"}


def load(path):
    with open(path, encoding="utf-8") as f:
        workflow = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as True.
    events = workflow.get("on", workflow.get(True))
    if isinstance(events, str):
        events = [events]
    return workflow, set(events)


def self_hosted_jobs(workflow):
    for name, job in workflow["jobs"].items():
        labels = job.get("runs-on")
        labels = [labels] if isinstance(labels, str) else list(labels or [])
        if "self-hosted" in labels:
            yield name, job


def lab_problems(path):
    """What breaks the rules in one workflow file, as messages naming job and fix."""
    workflow, events = load(path)
    name = os.path.basename(path)
    problems = [f"{name}: trigger {e} may run a fork's code with our token: use pull_request"
                for e in sorted(events & FORBIDDEN_EVENTS)]
    for job_name, job in self_hosted_jobs(workflow):
        condition = " ".join(str(job.get("if", "")).split())
        for event in sorted(events):
            guard = FORK_GUARDS.get(event)
            if guard is None:
                problems.append(f"{name}: job {job_name} runs on the self-hosted runner for "
                                f"event {event}, which has no known fork guard")
            elif guard not in condition:
                problems.append(f"{name}: job {job_name} runs on the self-hosted runner "
                                f"without the fork guard `if: ${{{{ {guard} }}}}`")
        concurrency = job.get("concurrency") or {}
        if concurrency.get("group") != LAB_GROUP or concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{name}: job {job_name} must set concurrency group {LAB_GROUP} "
                            f"with cancel-in-progress: false (one lab per runner, never cut short)")
    return problems


def test_there_are_workflows_with_self_hosted_jobs():
    jobs = [job for path in WORKFLOWS for job in self_hosted_jobs(load(path)[0])]
    assert len(WORKFLOWS) >= 2 and jobs, "expected the main and PR workflows with self-hosted jobs"


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_self_hosted_jobs_never_run_forks_and_share_the_lab_group(path):
    assert lab_problems(path) == []


def test_the_rules_catch_a_fork_job_and_a_second_group(tmp_path):
    """The checker itself: a gate 2 without the guard, in its own group, on a dangerous trigger."""
    broken = {
        "on": {"pull_request_target": None, "pull_request": None},
        "jobs": {"itest": {"runs-on": "self-hosted",
                           "concurrency": {"group": "homeops-lab-${{ github.workflow }}"},
                           "steps": [{"run": "make itest"}]}},
    }
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    problems = lab_problems(str(path))
    assert any("pull_request_target" in p and "fork's code" in p for p in problems), problems
    assert any("without the fork guard" in p for p in problems), problems
    assert any("concurrency group" in p for p in problems), problems
