#!/bin/sh
# The deploy's small PKI for the TLS proxy in front of Loki, run on the controller with
# openssl (roles/common/tasks/loki_tls.yml). Prints one word: "created" or "unchanged".
#
#   homeops-pki.sh ca DIR
#       DIR/ca.crt + DIR/ca.key: an ECDSA P-256 CA valid 10 years, made once.
#   homeops-pki.sh server DIR NAME SANS DAYS RENEW_DAYS
#       DIR/server-NAME.crt + .key, signed by DIR's CA, for the subjectAltName list SANS
#       ("DNS:obs-01,IP:10.0.0.5"). Made again when missing, when SANS changed, when it expires
#       within RENEW_DAYS, when DIR's CA did not sign it (a new CA), or when the key does not
#       match it (a run killed between the two renames).
# Keys are written under umask 077 and never printed; a half-made file never replaces a good one
# (each is written beside and renamed).
set -eu
umask 077

die() { echo "homeops-pki: $*" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || die "openssl not found on the controller: apt-get install openssl"

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: homeops-pki.sh ca DIR | server DIR NAME SANS DAYS RENEW_DAYS"
mkdir -p "$dir" || die "cannot create $dir (set observability_pki_dir)"
chmod 0700 "$dir"
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

case $cmd in
  ca)
    if [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ]; then echo unchanged; exit 0; fi
    [ -e "$dir/ca.key" ] && die "$dir/ca.key exists without ca.crt: restore ca.crt or remove both to make a new CA"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -subj "/CN=HomeOps observability CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>"$tmp/err" || { cat "$tmp/err" >&2; die "openssl could not make the CA"; }
    chmod 0644 "$tmp/ca.crt"
    mv "$tmp/ca.key" "$dir/ca.key" && mv "$tmp/ca.crt" "$dir/ca.crt"
    echo created
    ;;
  server)
    [ $# -eq 6 ] || die "usage: homeops-pki.sh server DIR NAME SANS DAYS RENEW_DAYS"
    name=$3; sans=$4; days=$5; renew=$6
    case $name in ''|*/*|.*) die "bad certificate name '$name'";; esac
    [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ] || die "no CA in $dir: run the 'ca' step first"
    crt="$dir/server-$name.crt"; key="$dir/server-$name.key"; san="$dir/server-$name.san"
    if [ -s "$crt" ] && [ -s "$key" ] && [ "$(cat "$san" 2>/dev/null)" = "$sans" ] \
        && openssl x509 -in "$crt" -noout -checkend $((renew * 86400)) >/dev/null 2>&1 \
        && openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1 \
        && [ "$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$key" -pubout 2>/dev/null)" ]; then
        echo unchanged; exit 0
    fi
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
        "$sans" >"$tmp/ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/CN=$name" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>"$tmp/err" \
      && openssl x509 -req -sha256 -days "$days" -in "$tmp/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/ext" -out "$tmp/server.crt" 2>>"$tmp/err" \
      || { cat "$tmp/err" >&2; die "openssl could not make the server certificate for $name"; }
    chmod 0644 "$tmp/server.crt"
    printf '%s' "$sans" >"$tmp/san"
    mv "$tmp/server.key" "$key" && mv "$tmp/server.crt" "$crt" && mv "$tmp/san" "$san"
    echo created
    ;;
  *) die "unknown step '$cmd' (ca or server)";;
esac
