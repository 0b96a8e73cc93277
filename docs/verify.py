#!/usr/bin/env python3
"""An auditor's own verifier of a Closeloop log, independent of the engine's code.

    python3 docs/verify.py EXPORT.jsonl [--checkpoints FILE --public-key PUBFILE]

EXPORT.jsonl is the output of `closeloop export` (the whole log: no --stream, no --since);
FILE a checkpoints file written by `closeloop checkpoint`; PUBFILE the public key
(`KEYFILE.pub` of `closeloop keygen`, 64 hex digits). It recomputes every event's hash from
its canonical bytes and the chain rule, checks positions and versions, and compares the
export with every checkpoint whose signature verifies, by the rules in the README ("Audit
and replay" and "Signed checkpoints"). Exit 0 when everything holds, 1 naming each break
(`BROKEN ...` lines, worded as `closeloop verify` words them), 2 on bad input.

Needs Python 3.8+ and, for checkpoints, the `cryptography` package (Ed25519):
    python3 -m pip install cryptography    (or: apt-get install python3-cryptography)
"""

import hashlib
import json
import sys

GENESIS = bytes(32)
FORMAT = "closeloop-checkpoint-v1"


class Number(str):
    """A JSON number kept as the exact text of the export, so it is hashed as written."""


def load(text):
    return json.loads(text, parse_float=Number, parse_int=Number, parse_constant=Number)


def escape(s):
    """A JSON string as serde_json writes it: only `"`, `\\` and control characters below
    U+0020 are escaped (\\b \\t \\n \\f \\r, else \\u00xx in lowercase hex); everything else,
    non-ASCII included, is written as UTF-8."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(code, "\\u%04x" % code))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(value):
    """Compact JSON with object keys sorted (by code point, which is UTF-8 byte order)."""
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, str):
        return escape(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(escape(k) + ":" + canonical(value[k]) for k in sorted(value)) + "}"
    raise ValueError("not JSON: %r" % (value,))


METADATA_KEYS = {"actor", "causation_id", "command_hash", "command_id", "correlation_id",
                 "occurred_at", "recorded_at"}


def event_bytes(event):
    """The canonical bytes of an event: the compact, key-sorted JSON of its stream, version,
    event_id, type, schema_version, data and metadata (command_hash only when present)."""
    metadata = dict(event["metadata"])
    unknown = set(metadata) - METADATA_KEYS
    if unknown:
        raise ValueError("unknown metadata keys %s" % sorted(unknown))
    if metadata.get("command_hash", 0) is None:
        del metadata["command_hash"]
    hashed = {k: event[k] for k in ("data", "event_id", "schema_version", "stream", "type", "version")}
    hashed["metadata"] = metadata
    return canonical(hashed).encode("utf-8")


def chain_hash(prev_hex, event):
    prev = bytes.fromhex(prev_hex) if prev_hex is not None else GENESIS
    return hashlib.sha256(prev + event_bytes(event)).hexdigest()


def root_of(streams):
    digest = hashlib.sha256()
    for name, version, head_hash in streams:
        digest.update(("%s\n%d\n%s\n" % (name, version, head_hash)).encode("utf-8"))
    return digest.hexdigest()


def signed_bytes(c):
    return ("%s\n%s\n%d\n%s\n%d\n%s\n" % (c["format"], c["log_id"], c["head"], c["created_at"],
                                           c["stream_count"], c["root"])).encode("utf-8")


def ed25519_verifier(pubfile):
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.exceptions import InvalidSignature
    except ImportError:
        sys.exit("verify.py: checking signatures needs the `cryptography` package: "
                 "python3 -m pip install cryptography (or apt-get install python3-cryptography)")
    text = open(pubfile, encoding="utf-8").read().strip()
    if len(text) != 64:
        sys.exit("%s: expected 64 hex digits (a 32-byte Ed25519 public key), found %d characters"
                 % (pubfile, len(text)))
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))

    def verify(signature_hex, message):
        try:
            signature = bytes.fromhex(signature_hex)
            if len(signature) != 64:
                return False
            key.verify(signature, message)
            return True
        except (ValueError, InvalidSignature):
            return False

    return text, verify


def plain(value):
    """Numbers back to int where the checkpoint format has integers."""
    return int(value) if isinstance(value, Number) else value


def authenticate(c, verify, given_key, log_id):
    if c.get("format") != FORMAT:
        return "forged or foreign: format `%s`, expected `%s`" % (c.get("format"), FORMAT)
    if not verify(c["signature"], signed_bytes(c)):
        by = ""
        if c.get("public_key") != given_key:
            by = " (it names key %s, not the given key %s)" % (c.get("public_key"), given_key)
        return "forged: the signature does not verify with the given public key" + by
    streams = [(s[0], plain(s[1]), s[2]) for s in c["streams"]]
    if c["stream_count"] != len(streams):
        return "forged: it lists %d streams but signed %d" % (len(streams), c["stream_count"])
    names = [s[0].encode("utf-8") for s in streams]
    if any(a >= b for a, b in zip(names, names[1:])):
        return "forged: its streams are not in ascending order of name"
    root = root_of(streams)
    if root != c["root"]:
        return "forged: its stream heads hash to %s, not to the signed root %s" % (root, c["root"])
    if c["log_id"] != log_id:
        return "a checkpoint of log %s, and this is log %s" % (c["log_id"], log_id)
    return None


def compare_heads(c, state):
    at = c["head"]
    problems = []
    listed = set()
    for name, version, head_hash in c["streams"]:
        version = plain(version)
        listed.add(name)
        found = state.get(name)
        if found is None:
            problems.append("removed stream: %s (version %d at the checkpoint) is not in the log "
                            "at or below position %d" % (name, version, at))
        elif found[0] < version:
            problems.append("truncated stream: %s ends at version %d at or below position %d, the "
                            "checkpoint signed version %d: its later events were removed"
                            % (name, found[0], at, version))
        elif found[0] > version:
            problems.append("inserted events: %s is at version %d at or below position %d, the "
                            "checkpoint signed version %d" % (name, found[0], at, version))
        elif found[1] != head_hash:
            problems.append("rewritten stream: %s version %d has hash %s, the checkpoint signed %s: "
                            "the stream was rewritten and its hashes recomputed"
                            % (name, version, found[1], head_hash))
    for name in sorted(set(state) - listed):
        problems.append("inserted stream: %s (version %d) is in the log at or below position %d "
                        "but not in the checkpoint" % (name, state[name][0], at))
    return problems


def main(argv):
    args = argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    export, checkpoints, pubfile = args[0], None, None
    rest = args[1:]
    while rest:
        flag = rest.pop(0)
        if flag in ("--checkpoints", "--public-key") and rest:
            if flag == "--checkpoints":
                checkpoints = rest.pop(0)
            else:
                pubfile = rest.pop(0)
        else:
            sys.exit("verify.py: unexpected argument %r\n%s" % (flag, __doc__))
    if (checkpoints is None) != (pubfile is None):
        sys.exit("verify.py: --checkpoints and --public-key go together")

    breaks, findings = [], []
    authentic = []
    read = 0
    log_id = None
    events = []
    with open(export, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    events.append(load(line))
                except ValueError as e:
                    sys.exit("%s line %d: not JSON: %s" % (export, number, e))
    for e in events:
        for key in ("position", "version", "schema_version"):
            e[key] = plain(e[key])
        if log_id is None:
            log_id = e.get("log_id")
        elif e.get("log_id") != log_id:
            breaks.append("%s version %d (position %d): from log %s, the export's first line is "
                          "from log %s" % (e["stream"], e["version"], e["position"],
                                           e.get("log_id"), log_id))

    if checkpoints is not None:
        given_key, verify = ed25519_verifier(pubfile)
        with open(checkpoints, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                read += 1
                try:
                    c = json.loads(line)
                    problem = authenticate(c, verify, given_key, log_id)
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    problem = "not a checkpoint (%s): damaged or forged" % e
                if problem:
                    findings.append((number, problem))
                else:
                    authentic.append((c["head"], number, c))
    authentic.sort(key=lambda t: (t[0], t[1]))

    heads = {}  # stream -> (version, hash)
    agreed = []
    pending = list(authentic)

    def compare_until(position):
        while pending and pending[0][0] <= position:
            head, number, c = pending.pop(0)
            problems = compare_heads(c, heads)
            agreed.append((head, number, c, not problems))
            findings.extend((number, p) for p in problems)

    compare_until(0)
    last = 0
    for e in events:
        at = "%s version %d (position %d)" % (e["stream"], e["version"], e["position"])
        if e["position"] != last + 1:
            breaks.append("%s: position %d follows position %d: the global order has a gap or is "
                          "out of order" % (at, e["position"], last))
        last = e["position"]
        version, prev = heads.get(e["stream"], (0, None))
        if e["version"] != version + 1:
            breaks.append("%s: version %d follows version %d: an event is missing or out of order"
                          % (at, e["version"], version))
        computed = chain_hash(prev, e)
        if computed != e["hash"]:
            breaks.append("%s: hash mismatch (stored %s, computed %s): the event or its "
                          "predecessor was altered" % (at, e["hash"], computed))
        heads[e["stream"]] = (e["version"], e["hash"])
        compare_until(e["position"])
    for head, number, c in pending:
        findings.append((number, "truncated tail: the log ends at position %d, but this checkpoint "
                                 "of %s covered positions 1..=%d: positions %d..=%d were removed"
                         % (last, c["created_at"], head, last + 1, head)))
        findings.extend((number, p) for p in compare_heads(c, heads))
        agreed.append((head, number, c, False))

    for b in breaks:
        print("BROKEN " + b)
    for number, problem in sorted(findings, key=lambda f: f[0]):
        print("BROKEN checkpoint line %d: %s" % (number, problem))
    print("%d events in %d streams checked: %s" % (
        len(events), len(heads),
        "hash chains intact, versions and positions contiguous" if not breaks
        else "%d breaks" % len(breaks)))
    if checkpoints is not None:
        valid = [t for t in agreed if t[3]]
        if valid:
            head, number, c, _ = max(valid, key=lambda t: (t[0], t[1]))
            covered = ("the newest valid checkpoint (line %d, %s) covers positions 1..=%d "
                       "(the log's head is %d)" % (number, c["created_at"], head, last))
        else:
            covered = "no valid checkpoint covers any of it"
        print("log %s: %d checkpoints read, %d findings; %s" % (log_id, read, len(findings), covered))
    return 1 if breaks or findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
