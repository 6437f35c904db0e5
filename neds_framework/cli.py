"""`neds-run`: run a recipe, or one of the sub-commands.

    neds-run RECIPE [--overlay FILE] [--set key.path=value ...] [--resume RUN] [--nproc N]
             [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]
                                                  run the recipe's stages in order (N processes
                                                  on each of M machines)
    neds-run validate RECIPE [--set ...] [--dump] check a recipe and every plugin section
    neds-run plugins                              list every registered name and its provider
    neds-run inspect RUN [--sessions]             summarise a run: training and its metrics table
    neds-run <command> ...                        a sub-command a plugin registered (e.g. synth)

Exit codes: 0 success, 2 bad input (recipe, path, name), 1 a run that failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Sequence


from neds_framework import __version__
from neds_framework.atomic import atomic_write_text
from neds_framework.engine.context import RunContext
from neds_framework.engine.run_lock import RunLock
from neds_framework.errors import NedsError, os_error
from neds_framework.plugins import PluginSet, get_plugins
from neds_framework.recipe import Recipe, dump_recipe, load_recipe
from neds_framework.registry import REGISTRY_NAMES

PROG = "neds-run"
BUILTIN_COMMANDS = {
    "validate": "check a recipe and all plugin settings without running anything",
    "plugins": "list every registered name by registry, with the providing distribution",
    "inspect": "summarise a run folder: versions, training, and its metrics table",
}


def run_dir_for(recipe: Recipe) -> Path:
    name = recipe.run.name or Path(recipe.path).stem
    return Path(recipe.run.dir) / name


def run_recipe(recipe: Recipe, plugins: PluginSet, resume: Path | None = None) -> RunContext:
    """Run the recipe's stages in order in its run folder (or in the folder being resumed)."""
    if resume is not None and not (resume / "run.h5").exists():
        raise NedsError(f"--resume {resume}: no run record (run.h5) there; give the folder of the run to continue")
    if resume is not None:  # its schema and its checkpoint are checked before any stage runs
        from neds_framework.engine.record import RunRecord

        record = RunRecord.load(resume)
        if "last" in record.checkpoints:
            record.checkpoint("last")
    context = RunContext(recipe=recipe, plugins=plugins, run_dir=resume or run_dir_for(recipe), resume=resume)
    main = int(os.environ.get("RANK", 0)) == 0  # under torchrun, rank 0 alone writes and talks
    context.run_dir.mkdir(parents=True, exist_ok=True)
    # One writer per run folder: rank 0 holds the lock for the whole run (the other ranks of the
    # same job write nothing); a second run into a live folder is refused with the holder's PID.
    with RunLock(context.run_dir) if main else contextlib.nullcontext():
        if main:
            atomic_write_text(context.run_dir / "recipe.yaml", dump_recipe(recipe))
        for stage in recipe.stages:
            entry = plugins.registries.stages.get(stage)
            if main:
                print(f"[{PROG}] stage {stage} ({entry.provider})", file=sys.stderr)
            entry.factory(context)
    if "WORLD_SIZE" in os.environ:
        from neds_framework.engine.distributed import teardown

        teardown()
    return context


# --------------------------------------------------------------------------- sub-commands


class _Parser(argparse.ArgumentParser):
    """argparse, but a command-line mistake is one line (argparse prints its usage block first)."""

    def error(self, message: str):
        command = self.prog.removeprefix(PROG).strip()
        raise NedsError(f"{command + ': ' if command else ''}{message}; see '{self.prog} --help'")


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path of the recipe YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one recipe key (value parsed as YAML); repeatable",
    )
    parser.add_argument(
        "--overlay",
        dest="overlays",
        action="append",
        default=[],
        metavar="FILE",
        help="merge a partial recipe file over the recipe (before --set); repeatable",
    )


def cmd_run(argv: Sequence[str]) -> int:
    parser = _Parser(prog=PROG, description="Run the stages a recipe names, in order.")
    _add_recipe_args(parser)
    parser.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="train with N processes on this machine (starts torchrun; gloo on CPU, NCCL on GPUs)")
    parser.add_argument("--nnodes", type=int, default=1, metavar="M",
                        help="the job spans M machines: run this same command on each, with its --node-rank")
    parser.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's place among the M (0 .. M-1)")
    parser.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                        help="where the machines meet: node 0's address and a free port on it (needed with --nnodes)")
    args = parser.parse_args(argv)
    launch = check_launch(args.nproc, args.nnodes, args.node_rank, args.rdzv_endpoint)
    if launch and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args.nproc, _without_launch_args(argv), args.nnodes, args.node_rank, args.rdzv_endpoint)
    plugins = get_plugins()
    recipe = load_recipe(args.recipe, args.overrides, plugins.registries, args.overlays)
    run_recipe(recipe, plugins, resume=args.resume)
    return 0


LAUNCH_ARGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")


def check_launch(nproc: int, nnodes: int, node_rank: int, endpoint: str | None) -> bool:
    """Check the launch flags; True when they ask for more than one process (torchrun starts them)."""
    if nproc < 1:
        raise NedsError(f"--nproc: expected at least 1, got {nproc}")
    if nnodes < 1:
        raise NedsError(f"--nnodes: expected at least 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise NedsError(f"--node-rank: expected 0 .. {nnodes - 1} for --nnodes {nnodes}, got {node_rank}")
    if nnodes > 1 and not endpoint:
        raise NedsError("--nnodes: a job on several machines needs --rdzv-endpoint HOST:PORT (node 0's address and a "
                        "free port there), the same on every machine")
    if endpoint is not None:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise NedsError(f"--rdzv-endpoint: expected HOST:PORT (e.g. node0:29500), got {endpoint!r}")
    return nproc > 1 or nnodes > 1


def _without_launch_args(argv: Sequence[str]) -> list[str]:
    """argv without the launch flags: torchrun's processes run the recipe itself."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_ARGS:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in LAUNCH_ARGS)):
            out.append(arg)
    return out


def launch_torchrun(nproc: int, argv: list[str], nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None) -> int:
    """Run this same command under torchrun's elastic launcher; its exit code is ours.

    One machine: a standalone rendezvous. Several: a static rendezvous at `endpoint`, where this
    machine's processes take global ranks node_rank * nproc ... (node_rank + 1) * nproc - 1, so the
    ranks, and with them each rank's shard of the batches, are the same as on one machine with
    nnodes * nproc processes. torchrun stops every process when one fails and reports which rank
    failed; each rank's stderr (with its one-line error) is passed through.
    """
    import subprocess

    where = (["--standalone"] if nnodes == 1 else
             [f"--nnodes={nnodes}", f"--node_rank={node_rank}", "--rdzv_backend=static", f"--rdzv_endpoint={endpoint}"])
    cmd = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={nproc}",
           "-m", "neds_framework.cli", *argv]
    print(f"[{PROG}] launching {nproc} process(es) on node {node_rank} of {nnodes}: {' '.join(cmd[1:])}", file=sys.stderr)
    return subprocess.call(cmd)


def cmd_validate(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} validate", description=BUILTIN_COMMANDS["validate"])
    _add_recipe_args(parser)
    parser.add_argument("--dump", action="store_true", help="print the resolved recipe as YAML")
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides, get_plugins().registries, args.overlays)
    if args.dump:
        print(dump_recipe(recipe), end="")
    else:
        print(f"{args.recipe}: ok (stages: {', '.join(recipe.stages)})")
    return 0


def cmd_plugins(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} plugins", description=BUILTIN_COMMANDS["plugins"])
    parser.parse_args(argv)
    plugins = get_plugins()
    print(f"plugins ({len(plugins.plugins)}):")
    for p in plugins.plugins:
        print(f"  {p.name:<22} {p.distribution} {p.version}  [{p.target}]")
    for kind in REGISTRY_NAMES:
        registry = plugins.registries[kind]
        print(f"{kind} ({len(registry)}):")
        for entry in registry:
            prov = entry.provider
            what = getattr(entry.factory, "describe", None)
            detail = f"  ({what()})" if kind == "modalities" and callable(what) else ""
            print(f"  {entry.name:<22} {prov.plugin:<18} {prov.distribution} {prov.version}{detail}")
    return 0


def cmd_inspect(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} inspect", description=BUILTIN_COMMANDS["inspect"])
    parser.add_argument("run", type=Path, help="a run folder (holding run.h5)")
    parser.add_argument("--split", default="test", help="which evaluation to show (default: test)")
    parser.add_argument("--sessions", action="store_true", help="also print every metric per session")
    args = parser.parse_args(argv)
    from neds_framework.engine.inspect_run import describe_run

    print(describe_run(args.run, args.split, args.sessions))
    return 0


def _plugin_command(name: str, argv: Sequence[str], plugins: PluginSet) -> int:
    command = plugins.registries.commands.get(name).factory
    parser = _Parser(prog=f"{PROG} {name}", description=getattr(command, "help", None))
    command.add_arguments(parser)
    return int(command.run(parser.parse_args(argv)) or 0)


def _usage(plugins: PluginSet | None) -> str:
    lines = [
        f"usage: {PROG} RECIPE [--set KEY.PATH=VALUE ...]",
        f"       {PROG} COMMAND [ARGS ...]",
        "",
        "Run a recipe's stages, or one of these commands:",
    ]
    commands = dict(BUILTIN_COMMANDS)
    if plugins is not None:
        commands.update({e.name: getattr(e.factory, "help", "") for e in plugins.registries.commands})
    lines += [f"  {name:<10} {text}" for name, text in commands.items()]
    lines += ["", f"'{PROG} COMMAND --help' describes each command. Exit codes: 0 ok, 2 bad input, 1 failure."]
    return "\n".join(lines)


def dispatch(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        try:
            plugins = get_plugins()
        except NedsError:
            plugins = None
        # Asked for (--help), the usage is the output; a bare `neds-run` is a usage error (stderr, 2).
        print(_usage(plugins), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"{PROG} (neds-framework) {__version__}")
        return 0
    head, rest = argv[0], list(argv[1:])
    if head == "validate":
        return cmd_validate(rest)
    if head == "plugins":
        return cmd_plugins(rest)
    if head == "inspect":
        return cmd_inspect(rest)
    plugins = get_plugins()
    if head in plugins.registries.commands:
        return _plugin_command(head, rest, plugins)
    if not head.startswith("-") and not Path(head).suffix and not Path(head).exists():
        raise NedsError(f"'{head}' is neither a command nor a recipe file; see '{PROG} --help'")
    return cmd_run(argv)


def _quiet_thread_disk_errors(args) -> None:
    """A background writer's disk error (TensorBoard's event thread) is raised again in the main
    thread by the writer's next call, where it becomes one line; its thread traceback is noise."""
    if issubclass(args.exc_type, OSError) and not os.environ.get("NEDS_DEBUG"):
        return
    _default_thread_hook(args)


_default_thread_hook = threading.excepthook


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    threading.excepthook = _quiet_thread_disk_errors
    try:
        return dispatch(argv)
    except NedsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:  # a disk or a path the user gave: one line naming the file and the fix
        error = os_error(exc)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("NEDS_DEBUG"):
            raise
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {exc} (set NEDS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
