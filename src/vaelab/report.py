"""vaelab-report <multirun dir>: every job's config and final metrics in one table (CSV and
Markdown), with the rate-distortion plot, ELBO and active units against beta, and samples; for
jobs evaluated with vaelab-eval on data with factors, their disentanglement metrics against the
regularisation strength and the rate, one line per objective."""

import argparse
import csv
import json
import math
from pathlib import Path

from omegaconf import OmegaConf

from vaelab.metric_specs import names
from vaelab.run_dir import CHECKPOINTS, EVAL, METRICS
from vaelab.sweep import Job, collect_jobs

#: the states a job can be in, in the order the report counts them
STATES = ("completed", "failed", "interrupted", "damaged", "incomplete", "not run")

#: The ELBO's terms, which the report takes from one checkpoint per job
TERMS = ("elbo", "recon", "kl")
#: the final weights of a run (LastCheckpoint saves them when training ends)
LAST = "last.ckpt"


def job_beta(job: Job) -> float | None:
    """The job's target KL weight, model.beta; None for objectives without one (capacity)."""
    target = str(job.select("model.kl_schedule._target_", ""))
    if target.endswith("CapacityAnnealing"):
        return None
    beta = job.select("model.beta")
    if beta is None:  # a job that has not written its config yet: its override, if any
        beta = job.override_values().get("model.beta")
    try:
        return None if beta is None else float(beta)
    except ValueError:
        return None


def job_objective(job: Job) -> str:
    """The objective's class name from model.objective._target_ (e.g. BetaTCVAE); "" if unknown."""
    objective = job.select("model.objective")
    target = objective.get("_target_") if isinstance(objective, dict) else objective
    return str(target or "").rsplit(".", 1)[-1]


def objective_class(name: str) -> type:
    """vaelab's objective class of this class name (e.g. BetaTCVAE), whose `label` and
    `strength` the report uses; the base class Objective (the defaults: model.beta) for any
    other. Only vaelab.models.objectives is looked in: a job's config never chooses what is
    imported."""
    from vaelab.models import objectives

    found = getattr(objectives, name, None) if name else None
    return found if isinstance(found, type) and issubclass(found, objectives.Objective) \
        else objectives.Objective


def objective_label(name: str) -> str:
    """How plots name the objective of this class name (the table keeps class names)."""
    return objective_class(name).label or name


def job_strength(job: Job) -> float | None:
    """The objective's regularisation strength: model.beta, or the objective's own weight
    (its class's `strength`: FactorVAE's gamma, DIP-VAE's lambda_od)."""
    key = objective_class(job_objective(job)).strength[0]
    if key == "model.beta":
        return job_beta(job)
    value = job.select(key)
    return float(value) if isinstance(value, int | float) else None


def evaluations(job: Job) -> list[dict]:
    """The job's vaelab-eval records (<job>/eval/<date_time>/metrics.json) with disentanglement
    metrics, newest first; damaged or half-written ones are left out."""
    records = []
    for path in (job.path / EVAL).glob(f"*/{METRICS}"):
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # a damaged or half-written evaluation: the others still count
        if isinstance(record, dict) and any(f"test/{m}" in record for m in names(score=True)):
            records.append((path.stat().st_mtime, record))
    return [record for _, record in sorted(records, key=lambda r: r[0], reverse=True)]


def checkpoint_name(recorded) -> str:
    """The file name of a recorded checkpoint; the final weights are last.ckpt's."""
    name = Path(str(recorded or "")).name
    return name if name.endswith(".ckpt") else LAST


def paired_numbers(job: Job, stage: str) -> dict:
    """The row's checkpoint and the numbers that come from that one checkpoint: training's
    elbo, recon and kl (of the checkpoint it tested; validated: the final weights, last.ckpt)
    with the newest vaelab-eval of the same checkpoint; when only other checkpoints were
    evaluated, the newest of those, its own ELBO, recon and KL replacing training's (test
    stage only: its numbers are test numbers)."""
    own = checkpoint_name(job.metrics.get("tested_checkpoint") if stage == "test" else LAST)
    row = {"checkpoint": own, **{n: job.metrics.get(f"{stage}/{n}") for n in TERMS}}
    candidates = [job.metrics, *evaluations(job)]
    same = [r for r in candidates if r is job.metrics or checkpoint_name(r.get("ckpt_path")) == own]
    chosen = next((r for r in same if scores_of(r)), None)
    if chosen is None and stage == "test" and len(candidates) > 1:
        chosen = candidates[1]
        row.update(checkpoint=checkpoint_name(chosen.get("ckpt_path")),
                   **{n: chosen.get(f"test/{n}") for n in TERMS})
    return {**row, **(scores_of(chosen) if chosen is not None else {})}


def scores_of(record: dict) -> dict:
    """{name: value} of the disentanglement scores (metric_specs) a metrics record holds."""
    return {name: record[f"test/{name}"] for name in names(score=True)
            if f"test/{name}" in record}


def line_labels(rows: list[dict], swept: list[str]) -> list[str]:
    """Each row's line in the per-objective plots: its objective, plus the swept settings that
    differ between jobs of one objective and strength other than the seed (whose jobs a line
    pools)."""
    groups: dict[tuple, set] = {}
    for row in rows:
        for key in swept:
            groups.setdefault((row["objective"], row["strength"], key), set()).add(row[key])
    split = [k for k in swept if k != "seed"
             and any(len(v) > 1 for (_, _, key), v in groups.items() if key == k)]
    return [", ".join([objective_label(row["objective"]) or "objective?",
                       *(f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in split)]) for row in rows]


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job."""
    values = [job.override_values() for job in jobs]
    keys = sorted({k for v in values for k in v})
    return [k for k in keys if len({v.get(k) for v in values}) > 1]


def report_stage(jobs: list[Job]) -> str:
    """'test' when every completed job was tested, else 'val'."""
    done = [j for j in jobs if j.status == "completed"]
    return "test" if done and all("test/elbo" in j.metrics for j in done) else "val"


def checkpoint_in_sweep(job: Job, name: str, sweep: Path) -> Path | None:
    """<job>/checkpoints/<name> when it is a file inside the sweep's folder (found there even if
    the sweep was moved); a path that a job's records name anywhere else is never opened."""
    path = job.path / CHECKPOINTS / Path(name).name
    if not path.is_file() or not path.resolve().is_relative_to(Path(sweep).resolve()):
        return None
    return path


def model_columns(ckpt: Path, data_dir: str | None, n_samples: int, seed: int,
                  trust_config: bool) -> tuple[dict, object]:
    """Active units on the val split, and n_samples prior samples, from checkpoint `ckpt`."""
    import torch

    from vaelab.checkpoints import load_run, setup_run_data
    from vaelab.metrics.active_units import active_units
    from vaelab.models.latents import posterior_means

    _, model, datamodule = load_run(ckpt, data_dir=data_dir, trust_config=trust_config)
    setup_run_data(datamodule, "validate")
    model.setup_data(datamodule)
    codes = posterior_means(model, datamodule.images("val"), datamodule.eval_batch_size,
                            datamodule.model_input,
                            model.condition_of(datamodule.labels("val")))
    active = active_units(codes)
    samples = None
    if n_samples:
        # a conditional model samples under the first val images' conditions
        conditions = model.condition_of(datamodule.labels("val")[:n_samples])
        samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed),
                               y=conditions)
    return {"active_units": int(active.sum()), "latent_dim": len(active)}, samples


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], columns: list[str], headers: dict[str, str]) -> str:
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def job_label(row: dict, swept: list[str]) -> str:
    others = [k for k in swept if k != "model.beta"]
    if not others and row["beta"] is not None:
        return f"β={row['beta']:g}"
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in swept) or row["job"]


def build_report(multirun_dir: Path, out_dir: Path, data_dir: str | None = None,
                 n_samples: int = 8, with_model: bool = True, seed: int = 0,
                 trust_config: bool = False) -> list[dict]:
    """Write sweep.csv, sweep.md and the figures to out_dir; returns the table's rows."""
    jobs = collect_jobs(multirun_dir)
    stage, swept = report_stage(jobs), swept_keys(jobs)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, samples = [], {}
    for job in jobs:
        overrides = job.override_values()
        row = {"job": job.path.name, "num": job.num, "status": job.status, "beta": job_beta(job),
               "kl_schedule": str(job.select("model.kl_schedule._target_", "")).rsplit(".")[-1],
               "objective": job_objective(job), "strength": job_strength(job),
               "latent_dim": job.select("model.latent_dim"),
               **{k: overrides.get(k) for k in swept}}
        paired = paired_numbers(job, stage) if job.status == "completed" else \
            {n: job.metrics.get(f"{stage}/{n}") for n in TERMS}
        row.update({n: paired.pop(n) for n in TERMS})
        if with_model and job.status == "completed":
            ckpt = checkpoint_in_sweep(job, paired["checkpoint"], multirun_dir)
            try:
                columns, images = model_columns(ckpt, data_dir, n_samples, seed, trust_config) \
                    if ckpt else ({}, None)
            except FileNotFoundError:  # the data moved: every job's, said once by main()
                raise
            except Exception as error:  # a truncated, crafted or unloadable checkpoint
                job.status, job.error = "damaged", f"{ckpt.name}: {type(error).__name__}: {error}"
                row["status"], columns, images = "damaged", {}, None
            row.update(columns)
            if images is not None:
                samples[job.path.name] = images
        row.update({k: v for k, v in sorted(job.metrics.items()) if k != "best_checkpoint"})
        row.update(paired)
        row.update(error=job.error, overrides=" ".join(job.overrides), path=str(job.path))
        rows.append(row)

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    figures = draw_figures(rows, swept, stage, samples, out_dir)
    write_markdown(multirun_dir, out_dir, rows, swept, stage, figures)
    return rows


def draw_figures(rows: list[dict], swept: list[str], stage: str, samples: dict,
                 out_dir: Path) -> list[str]:
    """The PNGs for the completed jobs; returns their file names."""
    from vaelab.viz.images import save_figure
    from vaelab.viz.sweep_plots import metric_vs_beta, rate_distortion, sample_rows

    done = [r for r in rows if r["status"] == "completed"
            and all(r.get(k) is not None for k in ("elbo", "recon", "kl"))]
    with_beta = [r for r in done if r["beta"] is not None]
    figures = {}
    if done:
        figures["rate_distortion.png"] = rate_distortion(
            [r["kl"] for r in done], [r["recon"] for r in done],
            [job_label(r, swept) for r in done])
    if len({r["beta"] for r in with_beta}) > 1:
        figures["elbo_vs_beta.png"] = metric_vs_beta(
            [r["beta"] for r in with_beta], [r["elbo"] for r in with_beta],
            f"{stage} ELBO [nats]", "ELBO against beta")
        counted = [r for r in with_beta if r.get("active_units") is not None]
        if counted:
            dims = {r["latent_dim"] for r in counted}
            figures["active_units_vs_beta.png"] = metric_vs_beta(
                [r["beta"] for r in counted], [r["active_units"] for r in counted],
                "active units (Cov_x E[z|x] > 0.01)", "active latent units against beta",
                ceiling=dims.pop() if len(dims) == 1 else None, ceiling_label="latent_dim")
    figures.update(disentanglement_figures(done, swept, stage))
    if samples:
        labelled = [r for r in done if r["job"] in samples]
        figures["samples.png"] = sample_rows([samples[r["job"]] for r in labelled],
                                             [job_label(r, swept) for r in labelled])
    for name, fig in figures.items():
        save_figure(fig, out_dir / name, dpi=120)
    return list(figures)


def disentanglement_figures(done: list[dict], swept: list[str], stage: str) -> dict:
    """{file name: figure}: every disentanglement metric the jobs have against the objective's
    strength and against the rate (KL), one line per objective, mean and min-max over seeds."""
    from vaelab.viz.sweep_plots import metrics_by_line

    scores = names(score=True)
    scored = [r for r in done if r["strength"] is not None
              and any(r.get(m) is not None for m in scores)]
    if not scored:
        return {}
    metrics = {m: [r.get(m) for r in scored] for m in scores
               if any(r.get(m) is not None for r in scored)}
    lines, strengths = line_labels(scored, swept), [r["strength"] for r in scored]
    symbols = dict.fromkeys(objective_class(r["objective"]).strength[1] for r in scored)
    return {
        "disentanglement_vs_strength.png": metrics_by_line(
            metrics, strengths, lines, strengths, f"strength ({', '.join(symbols)})",
            "disentanglement against the regularisation strength (mean, min-max over seeds)",
            log_x=all(s > 0 for s in strengths)),
        "disentanglement_vs_rate.png": metrics_by_line(
            metrics, [r["kl"] for r in scored], lines, strengths, f"rate: {stage} KL [nats]",
            "disentanglement against the rate (mean, min-max over seeds)"),
    }


def write_markdown(multirun_dir: Path, out_dir: Path, rows: list[dict], swept: list[str],
                   stage: str, figures: list[str]) -> None:
    counts = {s: sum(r["status"] == s for r in rows) for s in STATES}
    # the Markdown table's metric columns (metric_specs: summary), those some job has
    scored = [c for c in names(score=True, summary=True) if any(r.get(c) is not None for r in rows)]
    objectives = {r["objective"] for r in rows if r["objective"]}
    columns = ["num", "status", "beta", *(["objective"] if len(objectives) > 1 else []),
               *(["strength"] if scored else []), *[k for k in swept if k != "model.beta"],
               *(["checkpoint"] if scored else []),
               *[c for c in names(summary=True, factors=False)
                 if any(r.get(c) is not None for r in rows)], *scored]
    parts = [
        f"# Sweep report: {multirun_dir}",
        f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f". elbo, recon (-log p(x|z)) and kl are {stage} metrics in nats per image"
        + ("; active_units counts the latent dimensions with Cov_x(E[z|x]) > 0.01 on the val "
           "split (Burda et al.), from the best checkpoint." if "active_units" in columns
           else ".")
        + (" The disentanglement metrics (disentanglement_lib's definitions, README) come from "
           "the newest vaelab-eval (<job>/eval/<date_time>/metrics.json; sweep.csv has them "
           "all) of the checkpoint that training tested; each row's numbers come from the one "
           "checkpoint its checkpoint column names (where only another checkpoint was "
           "evaluated, its evaluation's elbo, recon and kl too). strength is the objective's "
           "regularisation weight (beta; FactorVAE's gamma; DIP-VAE's lambda_od). Blank: not "
           "evaluated yet, run vaelab-eval ckpt_path=<job>/checkpoints/<the tested_checkpoint "
           "of the job's metrics.json>." if scored else ""),
        markdown_table(rows, columns, {"num": "job"}),
    ]
    failed = [r for r in rows if r["status"] in ("failed", "interrupted", "damaged")]
    if failed:
        parts.append("## Failed jobs\n\n" + "\n".join(
            f"- job {r['num']} (`{r['job']}`, {r['status']}): {_fmt(r['error'])}"
            for r in failed))
    not_run = [r for r in rows if r["status"] == "not run"]
    if not_run:
        parts.append("## Jobs that did not run\n\n" + "\n".join(
            f"- job {r['num']}: `{r['overrides']}`" for r in not_run))
    optuna = multirun_dir / "optimization_results.yaml"
    if optuna.is_file():
        result = OmegaConf.load(optuna)
        parts.append(f"## Optuna\n\nbest value {_fmt(result.get('best_value'))} with "
                     f"`{OmegaConf.to_container(result.get('best_params'))}`")
    parts += [f"![{name[:-4]}]({name})" for name in figures]
    (out_dir / "sweep.md").write_text("\n\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vaelab-report",
        description="Summarise a sweep (a vaelab-train -m folder): every job's config and final "
                    "metrics in one table (sweep.csv, sweep.md), with the rate-distortion plot, "
                    "metrics against beta, and prior samples of each job; failed, interrupted, "
                    "damaged and never-run jobs are listed, not lost.")
    parser.add_argument("multirun_dir", type=Path,
                        help="the sweep's folder, e.g. outputs/train/multiruns/<date_time>")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: <multirun_dir>/report)")
    parser.add_argument("--data-dir", default=None,
                        help="where the data lives now, if not where the jobs found it")
    parser.add_argument("--samples", type=int, default=8,
                        help="prior samples per job in samples.png (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior samples")
    parser.add_argument("--no-model", action="store_true",
                        help="skip loading checkpoints (no active units, no samples)")
    parser.add_argument("--trust-checkpoint-config", action="store_true",
                        help="build the jobs' models from their checkpoints' stored configs "
                             "without checking them (only for sweeps whose files you trust: "
                             "README, 'What vaelab trusts')")
    args = parser.parse_args(argv)
    out = args.out or args.multirun_dir / "report"
    try:
        rows = build_report(args.multirun_dir, out, data_dir=args.data_dir,
                            n_samples=args.samples, with_model=not args.no_model, seed=args.seed,
                            trust_config=args.trust_checkpoint_config)
    except FileNotFoundError as error:  # no such sweep, or its data moved: say so, no traceback
        parser.error(str(error))
    print(f"{len(rows)} jobs -> {out / 'sweep.md'}, {out / 'sweep.csv'}")


if __name__ == "__main__":
    main()
