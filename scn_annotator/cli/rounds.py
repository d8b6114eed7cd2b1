"""``worker``, ``round``, ``rank``, ``simulate``: active learning from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import ScnError
from ..io.atomic import atomic_write_text
from ._common import (
    Progress,
    add_device,
    add_project_options,
    command,
    device,
    open_project,
    positive,
    rule,
    train_config,
)


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from ..app.worker import Worker

    logging.getLogger("scn_annotator").setLevel(logging.INFO)
    worker = Worker(
        args.project,
        device=device(args),
        image_root=args.image_root,
        data_dir=args.data_dir,
        stale_after_s=args.stale_after,
    )
    print(f"worker {worker.name} on {args.project}: waiting for jobs", file=sys.stderr)
    done = worker.run(once=args.once, idle_exit=args.idle_exit)
    print(f"worker {worker.name}: {done} job(s) done, stopping", file=sys.stderr)
    return 0


def time_left(history: list[tuple[float, float]], window_s: float = 30.0, settle_s: float = 20.0) -> float | None:
    """Seconds left at the pace of the last ``window_s`` of ``(time, fraction done)`` samples; None when unknown.

    Only the recent pace counts, and only once the job has moved for ``settle_s``: a
    round spends its first seconds starting a process and loading images at 0 %, then
    its first steps (warm-up, the first validation, the schedule fitted to the time
    limit) run slower than the rest; an estimate from them said 8 minutes for a round
    of 1.4. Until then the bar says it is estimating.
    """
    if len(history) < 2:
        return None
    now, done = history[-1]
    moving = next((t for t, p in history if p > 0.0), None)
    if moving is None or now - moving < settle_s:
        return None
    recent = [(t, p) for t, p in history if now - t <= window_s and t >= moving]
    t0, p0 = recent[0] if len(recent) > 1 else history[-2]
    if done <= p0 or done <= 0.02 or now <= t0:
        return None
    return (1.0 - done) * (now - t0) / (done - p0)


def _new_lines(lines: list[str], printed: list[str]) -> list[str]:
    """The lines of a log tail not yet printed (the tail keeps the last 40 lines: counting them fails)."""
    if not printed:
        return lines
    last = printed[-1]
    if last in lines:
        return lines[len(lines) - lines[::-1].index(last) :]
    return lines


def _follow(project, job_id: int) -> dict:  # noqa: ANN001
    """Print a job's progress until it ends: its log above a bar, with the time left at the recent pace."""
    printed: list[str] = []
    history: list[tuple[float, float]] = []
    with Progress("round", "%", rate=False) as bar:
        while True:
            job = project.jobs.job(job_id)
            lines = job.log_tail.splitlines() if job.log_tail else []
            for line in _new_lines(lines, printed):
                bar.write(f"  {line}")
                printed.append(line)
            history.append((time.monotonic(), job.progress))
            left = time_left(history)
            eta = f"about {max(1, round(left / 60))} min left" if left is not None else "estimating time left"
            if job.finished:
                eta = job.state
            bar(round(100 * job.progress), 100, stage=job.stage or job.state, eta=eta)
            if job.finished:
                bar.refresh()  # the last figure drawn, 100 % for a finished round
                return job
            time.sleep(1.0)


def cmd_round(args: argparse.Namespace) -> int:
    from ..active.policy import RoundPolicy
    from ..app.worker import ensure_worker
    from ..db.models import JobKind, JobState

    project = open_project(args.project, args)
    policy = RoundPolicy.of(project)
    changed = False
    for key in ("strategy", "auto_every", "initial_steps", "round_steps"):
        value = getattr(args, key)
        if value is not None:
            setattr(policy, key, value)
            changed = True
    if changed:
        policy.save(project)
    job_id = project.jobs.enqueue(JobKind.ROUND, {"done_count": project.counts()["done"], "trigger": "request"})
    pid = ensure_worker(args.project, project)
    started = f"started a worker (pid {pid}, log in {project.worker_log})" if pid else "a worker is running"
    print(f"round queued as job {job_id}; {started}")
    if args.no_wait:
        return 0
    job = _follow(project, job_id)
    if job.state != JobState.DONE:
        raise ScnError(f"job {job_id} {job.state}: {job.error or job.message}")
    print(f"round done: {job.message}")
    return cmd_rank(args)


def cmd_rank(args: argparse.Namespace) -> int:
    from ..active.ranking import ranked_queue

    project = open_project(args.project, args)
    queue = ranked_queue(project, strategy=args.strategy)
    if not queue.rows:
        print("nothing to rank yet: run a round (scn-annotator round PROJECT) first")
        return 0
    unit = queue.unit
    if any(row.reason for row in queue.rows):  # a pool strategy: each row says why it is where it is
        reasons = {row.reason for row in queue.rows}
        if len(reasons) == 1:  # one reason for all (before any model: a random order): said once
            print(f"next images: {reasons.pop()}")
        else:
            model = "no model yet" if queue.model_version is None else f"model version {queue.model_version}"
            print(f"next images by {queue.strategy} ({model})")
        print(f"  {'image':<20}{'status':<13}{'value':>9}" + ("  why" if reasons else ""))
        for row in queue.rows[: args.top]:
            value = f"{row.score:>9.3f}" if row.score is not None else f"{'-':>9}"
            print(f"  {row.name:<20}{row.status:<13}{value}" + (f"  {row.reason}" if reasons else ""))
        if args.json:
            atomic_write_text(args.json, json.dumps([r.__dict__ for r in queue.rows], indent=2, default=str))
        return 0
    print(
        f"next images by {queue.strategy} (model version {queue.model_version}); "
        f"doubtful landmarks have the highest per-landmark values"
    )
    print(f"  {'image':<20}{'status':<13}{'score':>9}  doubtful landmarks ({unit})")
    for row in queue.rows[: args.top]:
        doubts = (
            f"{len(row.doubtful)}: " + ", ".join(f"{name} {value:.2f}" for name, value in row.doubtful[:4])
            if row.doubtful
            else ""
        )
        score = f"{row.score:>9.3f}" if row.score is not None else f"{'-':>9}"  # done images carry no score
        print(f"  {row.name:<20}{row.status:<13}{score}  {doubts}")
    if args.json:
        atomic_write_text(args.json, json.dumps([r.__dict__ for r in queue.rows], indent=2, default=str))
    return 0


def _counts(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers of images, e.g. 8,16,32,64; not {text!r}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..active.learning_curves import plot
    from ..active.simulate import Campaign, run_campaign, summarise

    cfg = train_config(args)
    campaign = Campaign(
        strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
        seeds=list(range(args.first_seed, args.first_seed + args.seeds)),
        initial=args.initial,
        batch=args.batch,
        budget=args.budget,
        test=args.test,
        initial_steps=args.initial_steps,
        round_steps=args.round_steps,
        diversity=args.diversity,
        schedule=args.schedule,
        pool=args.pool,
        effort=args.effort,
        effort_test=args.effort_test,
        group=args.group,
        initial_strategy=args.initial_strategy,
        embedding=args.embedding,
        cold_embedding=args.cold_embedding,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_campaign(
        args.images,
        args.labels,
        cfg,
        campaign,
        spacing_rule=rule(args.spacing_from),
        device=device(args),
        log=lambda m: print(m, file=sys.stderr),
        checkpoint=args.out / "campaign.json",
        outside=args.outside,
    )
    result.write(args.out / "campaign.json")
    summary = summarise(result)
    atomic_write_text(args.out / "summary.json", json.dumps({k: s.to_dict() for k, s in summary.items()}, indent=2))
    if not plot(result, summary, args.out / "learning_curves.png"):
        print("note: no plot drawn (matplotlib is not installed: pip install 'scn-annotator[plot]')", file=sys.stderr)
    print(
        f"{'strategy':<18}"
        + "".join(f"{b:>8}" for b in next(iter(summary.values())).budgets)
        + f"{'AUC':>8}{'to reach random':>18}"
    )
    for name, s in summary.items():
        reach = s.labels_to_reach_random_final
        reach_text = "not reached" if reach is None else f"{reach:.1f} ({100 * (s.saving_vs_random or 0):+.0f} %)"
        print(f"{name:<18}" + "".join(f"{m:>8.2f}" for m in s.mean) + f"{s.auc:>8.2f}{reach_text:>18}")
    print(f"\nmean test error in {result.unit} per number of labelled images")
    if any(s.corrections for s in summary.values()):
        print(
            f"\nthe oracle's corrections within {args.effort}, summed over the labelled images (proposals / "
            "conditioned), and per test image at each budget:"
        )
        print(f"{'labelled':<18}" + " ".join(f"{b:^15}" for b in next(iter(summary.values())).budgets))
        for name, s in summary.items():
            c = s.corrections or {}
            total = " ".join(f"{p:>7.0f}/{q:<7.0f}" for p, q in zip(c.get("proposals", []), c.get("conditioned", [])))
            print(f"{name:<18}{total}")
            t = s.test_effort
            if t:
                per = " ".join(f"{p:>7.1f}/{q:<7.1f}" for p, q in zip(t["proposals"], t["conditioned"]))
                print(f"{'  per test image':<18}{per}")
            paid = s.corrections_to_reach
            if paid is not None:
                print(f"  until random's final error is reached: {paid['proposals']:.0f} / {paid['conditioned']:.0f}")
    print(f"results and summary in {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A generated sample project, one active-learning round, the error and the queue."""
    import tempfile

    import numpy as np

    from ..active.policy import RoundPolicy
    from ..app.sample_project import generate_sample, sample_project
    from ..app.worker import ensure_worker
    from ..db.models import JobKind, JobState
    from ..engine.evaluation import point_errors
    from ..io.landmark_files import read_landmarks

    started = time.perf_counter()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scn-demo-"))
    if (root / "project").exists():
        raise ScnError(f"{root / 'project'} exists already; give another --dir")
    print(f"1/4 generating {args.count} phantom hand radiographs (five look-alike fingers, 15 landmarks)")
    truth_file = generate_sample(root / "sample", count=args.count, seed=7)
    truth = read_landmarks(truth_file)
    labelled = sorted(truth.points)[: args.labelled]
    project = sample_project(
        root / "project", root / "sample" / "images", truth.points, labelled, user="demo", author="demo annotator"
    )
    print(f"2/4 project {project.data_dir}: {args.count} images, {len(labelled)} annotated and marked done")
    policy = RoundPolicy(initial_steps=args.steps, overrides={"input_size": [160, 128]})
    policy.save(project)
    job_id = project.jobs.enqueue(JobKind.ROUND, {"done_count": len(labelled), "trigger": "demo"})
    pid = ensure_worker(project.data_dir, project, once=True)
    print(f"3/4 training round in a background worker (pid {pid}), {args.steps} steps on the CPU:")
    job = _follow(project, job_id)
    if job.state != JobState.DONE:
        raise ScnError(f"the round {job.state}: {job.error or job.message}")
    current = project.models.current()
    errors = []
    for image in project.images(["new"]):
        predicted = project.predictions.latest(image.id).points
        errors.append(point_errors(predicted, truth.points[image.name], image.spacing))
    errors = np.concatenate(errors)
    errors = errors[~np.isnan(errors)]
    print(
        f"4/4 model version {current.id}: on the {len(errors) // 15} images nobody annotated yet, "
        f"mean error {errors.mean():.2f} mm, median {np.median(errors):.2f} mm, "
        f"{100 * (errors <= 2).mean():.0f} % within 2 mm"
    )
    print()
    cmd_rank(
        argparse.Namespace(project=str(project.data_dir), strategy=None, top=8, json=None, image_root=None, user=None)
    )
    print(f"\nThe project is in {project.data_dir} (done in {(time.perf_counter() - started) / 60:.1f} min).")
    cli = command()  # as the user can type it: the venv need not be active
    print(f"  {cli} status {project.data_dir}\n  {cli} gui {project.data_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    _register_worker(sub)
    _register_round(sub)
    _register_rank(sub)
    _register_simulate(sub)
    _register_demo(sub)


def _register_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run the background worker of a project (training rounds, re-ranking)",
        description="Takes jobs from the project's queue until stopped. Runs on this machine, or "
        "on a GPU server that shares the team's PostgreSQL (give the URL).",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--once", action="store_true", help="stop after one job (or at once if there is none)")
    p.add_argument("--idle-exit", type=positive(float), metavar="S", help="stop after S seconds without a job")
    p.add_argument(
        "--stale-after",
        type=positive(float),
        default=60.0,
        metavar="S",
        help="requeue a job whose worker sent no heartbeat for S seconds (default 60)",
    )
    add_device(p)
    add_project_options(p)
    p.set_defaults(func=cmd_worker)


def _register_round(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "round",
        help="queue a training round, start a worker if none runs, and follow it",
        description="Fine-tune on the done images, re-predict and re-rank the rest. Options "
        "given here are stored as the project's retraining policy.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--no-wait", action="store_true", help="queue the round and return")
    p.add_argument("--strategy", help="the ranking strategy to store as the project's default")
    p.add_argument("--auto-every", type=int, metavar="N", help="queue a round automatically after N new done images")
    p.add_argument("--initial-steps", type=positive(int), help="steps of the first model (from scratch)")
    p.add_argument("--round-steps", type=positive(int), help="steps of each later round (fine-tuning)")
    p.add_argument("--top", type=positive(int), default=10, help="images to list afterwards")
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    add_project_options(p)
    p.set_defaults(func=cmd_round)


def _register_rank(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="the images the model is least sure about, with their doubtful landmarks")
    p.add_argument("project", help="project folder or database URL")
    p.add_argument(
        "--strategy",
        help="rank by this strategy (default: the project's; before any model, typical images first)",
    )
    p.add_argument("--top", type=positive(int), default=10, help="how many to list (default 10)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the whole ranking as JSON")
    add_project_options(p)
    p.set_defaults(func=cmd_rank)


def _register_simulate(sub: argparse._SubParsersAction) -> None:
    from ..active.embeddings import MODEL_FREE
    from ..active.pool import POOL_STRATEGIES
    from ..active.scores import STRATEGIES

    p = sub.add_parser(
        "simulate",
        help="an active-learning campaign with an oracle annotator (the truth CSV)",
        description="Start from random images, let each strategy pick batches, fine-tune, and "
        "measure the test error per number of labelled images. Writes campaign.json, "
        "summary.json and learning_curves.png.",
    )
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--labels", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="folder for the results")
    p.add_argument(
        "--strategies",
        default="random,least_confident,sc_la_mass",
        help=f"comma-separated, of: {', '.join([*STRATEGIES, *POOL_STRATEGIES])}",
    )
    p.add_argument("--seeds", type=positive(int), default=3)
    p.add_argument("--first-seed", type=int, default=0, help="run seeds FIRST .. FIRST+SEEDS-1 (to split a campaign)")
    p.add_argument("--initial", type=positive(int), default=8, help="random images to start from")
    p.add_argument("--batch", type=positive(int), default=8, help="images per round")
    p.add_argument("--budget", type=positive(int), default=48, help="stop at this many labelled images")
    p.add_argument("--test", type=positive(int), default=20, help="held-out test images")
    p.add_argument("--initial-steps", type=positive(int), default=1000)
    p.add_argument("--round-steps", type=positive(int), default=400)
    p.add_argument("--diversity", type=float, default=0.0, help="weight of the diversity term (0: none)")
    p.add_argument("--spacing-from", metavar="A,B=MM", help="spacing from two landmarks, e.g. 1,5=50")
    p.add_argument(
        "--schedule",
        type=_counts,
        metavar="N,N,...",
        help="labelled images after each round, e.g. 8,16,32,64 (instead of --initial/--batch/--budget)",
    )
    p.add_argument("--pool", type=positive(int), help="draw from at most this many pool images (seeded)")
    p.add_argument("--effort", metavar="TOL", help="count the oracle's corrections within TOL (2mm, 25px, 1%%)")
    p.add_argument("--effort-test", type=int, metavar="N", help="... on the first N test images (default all)")
    p.add_argument(
        "--group",
        metavar="REGEX",
        help="a regex whose first group names the patient; the test split keeps patients whole",
    )
    p.add_argument(
        "--initial-strategy",
        default="random",
        help="how the first images are chosen before any model: random (default) or a pool strategy (typical, "
        "coverage) on the model-free embeddings",
    )
    p.add_argument(
        "--embedding",
        choices=["features", "pixels"],
        default="features",
        help="what pool strategies cluster once a model exists (default: the model's features)",
    )
    p.add_argument(
        "--cold-embedding",
        choices=list(MODEL_FREE),
        default="pixels",
        help="the model-free embedding before any model: a thumbnail (default) or its oriented gradients",
    )
    from ._common import add_train_options

    add_train_options(p)
    add_device(p)
    p.set_defaults(func=cmd_simulate)


def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="a generated sample project and one active-learning round, in minutes",
        description="Generates phantom radiographs, annotates a few with their true "
        "landmarks, trains in a background worker, and prints the error and the "
        "ranked queue.",
    )
    p.add_argument("--dir", type=Path, help="where to put it (default: a new temporary folder)")
    p.add_argument("--count", type=positive(int), default=48, help="images to generate")
    p.add_argument("--labelled", type=positive(int), default=16, help="images annotated before the round")
    p.add_argument("--steps", type=positive(int), default=600, help="training steps of the round")
    p.set_defaults(func=cmd_demo)
