"""`neds-run`: run a recipe, or one of the sub-commands.

    neds-run RECIPE [--overlay FILE] [--set key.path=value ...] [--resume RUN] [--nproc N]
                                                  run the recipe's stages in order (N processes)
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
    args = parser.parse_args(argv)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args.nproc, [a for a in _without_nproc(argv)])
    if args.nproc < 1:
        raise NedsError(f"--nproc: expected at least 1, got {args.nproc}")
    plugins = get_plugins()
    recipe = load_recipe(args.recipe, args.overrides, plugins.registries, args.overlays)
    run_recipe(recipe, plugins, resume=args.resume)
    return 0


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Run this same command under torchrun with N local processes; its exit code is ours.

    torchrun stops every process when one fails and reports which rank failed; each rank's
    stderr (with its one-line error) is passed through.
    """
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "neds_framework.cli", *argv]
    print(f"[{PROG}] launching {nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr)
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
