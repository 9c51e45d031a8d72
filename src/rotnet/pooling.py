"""Which finished runs of a report row are pooled: seeds of one protocol on one data. A row's mean, std and gains
are over seeds, so two runs of the same arch and experiment made with another lr, schedule or number of epochs, or
on other data files, are not two samples of one number; the row keeps the seeds of its most common protocol (ties:
the lowest seed's) and names each other run with what differs. A from-rotation seed's protocol includes what it
started from: its own seed's rotation run of one rotation protocol, or one fixed set of weights. Likewise a
pretraining gain pairs a from-rotation row only with a from-random row of the same protocol."""

from __future__ import annotations

from rotnet.config import NOT_PROTOCOL, config_diff, with_defaults
from rotnet.data import data_diff

IGNORED = (*NOT_PROTOCOL, "seed")  # what may differ between the seeds of one row
PAIRED = ("experiment", "init", "pretrain_dataset")  # what a from-rotation run and its from-random partner differ in


def differences(run: dict, like: dict, ignore: tuple[str, ...] = IGNORED) -> list[str]:
    """What makes `run` another sample than `like`: configuration keys (as `config_diff` says them), data files
    (as `data_diff` does, over the fingerprint keys both record) and, between two from-rotation runs, what each
    started from (`started_from`)."""
    out = config_diff(like["cfg"], run["cfg"], ignore) + files_differ(like["config"], run["config"], "dataset", "data")
    a, b = started_from(like), started_from(run)
    if a is None or b is None:  # a from-random run, or a rotation run: it starts from no rotation weights
        return out
    if a[0] != b[0] or (a[0] == "weights" and a[1] != b[1]):
        return out + [f"rotation weights: {said(like, a)} -> {said(run, b)}"]
    if a[0] == "own":  # two seeds' own rotation runs: of one protocol, on the same files?
        if a[1] is not None and b[1] is not None:
            out += [f"its rotation run's {d}" for d in config_diff(a[1], with_defaults(b[1]), IGNORED)]
        out += files_differ(like, run, "source_data", "its rotation run's data")
    return out


def files_differ(like: dict, run: dict, key: str, what: str) -> list[str]:
    """What differs between two records' data fingerprints under `key` (as `data_diff` says it, over the keys both
    record); nothing when either does not record one."""
    a, b = like.get(key), run.get(key)
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return []
    return [f"{what} {d}" for d in data_diff({k: a[k] for k in set(a) & set(b)}, b)]


def started_from(run: dict) -> tuple[str, dict | str | None] | None:
    """What a from-rotation run's weights started from, as a row's seeds must share it: ("own", the rotation run's
    configuration, None in a record older than it) for a rotation run of the run's own seed, found by the default
    lookup or named by --init, here or elsewhere (an independent pretraining of that seed); ("weights", sha256) for
    any other weights (another seed's rotation run, weights that record no run). None: it started from none."""
    config = run["config"]
    if run["cfg"].get("init") != "rotation" or not isinstance(sha := config.get("init_sha256"), str):
        return None
    made = config.get("init_source_config")
    if not isinstance(made, dict):  # weights that record no run; or a record older than this key: found by lookup
        return ("weights", sha) if config.get("init_from") == "--init" else ("own", None)
    return ("own", made) if made.get("seed") == run["cfg"].get("seed") else ("weights", sha)


def said(run: dict, start: tuple) -> str:
    """A from-rotation run's start, for a "not pooled" note."""
    if start[0] == "own":
        return "its seed's rotation run"
    made = run["config"].get("init_source_config")
    whose = f"seed {made.get('seed')}'s rotation run" if isinstance(made, dict) else "weights of no recorded run"
    return f"--init {run['config'].get('init_weights')} ({whose})"


def pool(runs: list[dict]) -> list[dict]:
    """The runs, each finished one outside its row's pooled protocol given the status "not pooled" and why."""
    rows: dict[tuple, list[list[dict]]] = {}
    for r in sorted((r for r in runs if r["status"] == "finished"), key=lambda r: r["seed"]):
        groups = rows.setdefault((r["data"], r["arch"], r["experiment"], r["per_class"]), [])
        same = next((g for g in groups if not differences(r, g[0])), None)
        if same:
            same.append(r)
        else:
            groups.append([r])
    apart = {}
    for groups in rows.values():
        kept = max(groups, key=len)  # max keeps the first of equals: the lowest seed's
        for r in (r for g in groups if g is not kept for r in g):
            why = ", ".join(differences(r, kept[0]))
            apart[id(r)] = {"status": "not pooled", "error": f"another protocol than seed {kept[0]['seed']} ({why})"}
    return [r | apart[id(r)] if id(r) in apart else r for r in runs]


def unpaired(rotation: dict | None, random: dict | None) -> str:
    """Why a from-rotation row's runs (one of them: the row pools one protocol) cannot be compared with its
    from-random row's: what differs besides the pretraining ('' if nothing, or a side has no finished run)."""
    if rotation is None or random is None:
        return ""
    return ", ".join(differences(rotation, random, IGNORED + PAIRED))
