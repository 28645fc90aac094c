"""`wmbench list` and `wmbench doctor`: what is available, and what is missing with the command that installs it.

`list protocols` and `list suites` read the protocol files and the light suite modules only (no simulator, no
torch); `list methods` imports each registered method class to show its presets (that may import torch).
`doctor` actually imports every suite's simulator (`check_installed`), probes the OpenGL backends used for DMC
pixels, and reports torch's version, threads, CUDA devices and bfloat16 support.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tomllib
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version

from wmbench.errors import WmbenchError

LIST_WHAT = ("protocols", "suites", "methods")


class InfoError(WmbenchError, ValueError):
    """A bad argument to `wmbench list` / `wmbench doctor`."""


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return "\n".join(lines)


def _count(n: float) -> str:
    """100000 -> '100k', 1000000 -> '1M' (exact values only; otherwise the digits)."""
    n = int(n)
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def protocol_rows() -> list[list[str]]:
    from wmbench.protocols import load_protocol, protocol_files

    rows = []
    for pid, path in protocol_files().items():
        try:
            p = load_protocol(path)
        except WmbenchError as e:
            rows.append([pid, "?", "?", f"invalid: {e}", "?", "?"])
            continue
        budget = f"{_count(p.budget.agent_steps)} agent steps"
        if p.action_repeat_per_task:  # agent steps differ per task; the env steps do not
            repeats = sorted({p.repeat_for(t) for t in p.tasks})
            budget = (f"{_count(p.to_unit(p.budget.agent_steps))} {p.budget.step_unit} (action repeat per task: "
                      f"{', '.join(map(str, repeats))})")
        elif p.budget.step_unit != "agent_steps":
            budget += f" = {_count(p.to_unit(p.budget.agent_steps))} {p.budget.step_unit}"
        available = suite_available(p.suite)
        if available == "yes":
            from wmbench.envs import suite_module

            missing = getattr(suite_module(p.suite), "missing_data", lambda _: [])(p)
            if missing:
                available = f"no: missing {', '.join(missing)}"
        rows.append([p.id, p.suite, str(len(p.tasks)), budget, p.hash, available])
    return rows


# Top-level module each suite's simulator provides: `list` looks it up without importing it (importing ale_py or
# dm_control takes seconds); `doctor` imports it for real.
SUITE_IMPORTS = {
    "atari": "ale_py",
    "dmc": "dm_control",
    "control": "mujoco",
    "minecraft": "minerl",
    "dmlab": "deepmind_lab",
    "crafter": "crafter",
    "distracting": "dm_control",
    "memory_maze": "memory_maze",
    "box2d": "Box2D",
    "vizdoom": "vizdoom",
    "metaworld": "metaworld",
}


def suite_available(suite: str) -> str:
    """'yes' when the suite's simulator module is importable by name (not imported), else 'no (wmbench doctor)'."""
    import importlib.util

    module = SUITE_IMPORTS.get(suite)
    if module is None:
        return "yes"
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return "yes" if found else "no (wmbench doctor)"


def suite_rows() -> list[list[str]]:
    from wmbench.envs import suite_module, suite_names
    from wmbench.protocols import protocol_files

    by_suite: dict[str, list[str]] = {}
    for pid, path in protocol_files().items():
        try:
            suite = tomllib.loads(path.read_text()).get("suite", "?")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        by_suite.setdefault(suite, []).append(pid)
    rows = []
    for name in suite_names():
        try:
            module = suite_module(name)
            tasks = getattr(module, "TASKS", None)
            n_tasks = "any" if tasks is None else str(len(tasks))
            hint = getattr(module, "INSTALL_HINT", "")
        except ImportError as e:
            n_tasks, hint = "?", f"adapter cannot be imported: {e}"
        rows.append([name, n_tasks, ", ".join(by_suite.get(name, [])) or "-", hint])
    return rows


def method_rows(with_presets: bool) -> list[list[str]]:
    from wmbench.method import method_targets

    rows = []
    for name, target in method_targets().items():
        presets = recipes = "-"
        if with_presets:
            try:
                from wmbench.method import get_method
                from wmbench.recipes import method_recipes_text

                cls = get_method(name)
                names = sorted(getattr(cls, "PRESETS", {}) or getattr(cls.Config, "PRESETS", {}) or {})
                presets = ", ".join(names) or "(none)"
                recipes = method_recipes_text(name)
            except Exception as e:  # a broken third-party method must not break the listing
                presets = f"(cannot import: {type(e).__name__}: {e})"
        rows.append([name, target, presets, recipes] if with_presets else [name, target])
    return rows


def cli_list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wmbench list", description="list protocols, suites and methods")
    parser.add_argument("what", nargs="?", default=None, help=f"one of {', '.join(LIST_WHAT)} (default: all)")
    args = parser.parse_args(argv)
    if args.what is not None and args.what not in LIST_WHAT:
        import difflib

        close = difflib.get_close_matches(args.what, LIST_WHAT, n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise InfoError(f"cannot list {args.what!r}.{hint} Choose one of: {', '.join(LIST_WHAT)}")
    sections: list[tuple[str, Callable[[], str]]] = []
    if args.what in (None, "protocols"):
        sections.append(
            ("protocols", lambda: _table(protocol_rows(), ["protocol", "suite", "tasks", "budget", "hash", "available"]))
        )
    if args.what in (None, "suites"):
        sections.append(("suites", lambda: _table(suite_rows(), ["suite", "tasks", "protocols", "install"])))
    if args.what == "methods":
        sections.append(("methods", lambda: _table(method_rows(True), ["method", "entry point", "presets", "recipes (--recipe)"])))
    elif args.what is None:
        sections.append(
            (
                "methods (presets: wmbench list methods)",
                lambda: _table(method_rows(False), ["method", "entry point"]),
            )
        )
    for i, (title, render) in enumerate(sections):
        if len(sections) > 1:
            print(("\n" if i else "") + f"{title}:")
        print(render())
    return 0


def _versions(packages: Iterable[str]) -> str:
    found = []
    for pkg in packages:
        try:
            found.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


SUITE_PACKAGES = {
    "atari": ("ale-py",),
    "dmc": ("dm-control", "mujoco"),
    "control": ("mujoco", "gymnasium"),
    "minecraft": ("minerl",),
    "dmlab": ("deepmind-lab",),
    "crafter": ("crafter", "numba"),
    "distracting": ("dm-control", "mujoco"),
    "memory_maze": ("memory-maze", "gym", "dm-control", "mujoco"),
    "box2d": ("Box2D", "box2d-py", "gymnasium"),
    "vizdoom": ("vizdoom",),
}


def suite_status() -> list[list[str]]:
    """[suite, status, detail, install command] for every registered suite; imports each simulator."""
    from wmbench.envs import SuiteNotInstalled, suite_module, suite_names

    rows = []
    for name in suite_names():
        try:
            module = suite_module(name)
        except ImportError as e:
            rows.append([name, "broken", f"adapter module cannot be imported: {e}", "-"])
            continue
        hint = getattr(module, "INSTALL_HINT", "") or "-"
        try:
            module.check_installed()
        except SuiteNotInstalled as e:
            # The message ends with the install command, which has its own column.
            rows.append([name, "not installed", str(e).split(" Install: ")[0], hint])
            continue
        except Exception as e:  # a half-broken install: say what failed rather than crash the doctor
            rows.append([name, "broken", f"{type(e).__name__}: {e}", hint])
            continue
        rows.append([name, "installed", _versions(SUITE_PACKAGES.get(name, ())) or "built in", hint])
    return rows


def gl_status(user_gl: str | None) -> list[str]:
    """MUJOCO_GL as the user set it, and whether EGL / OSMesa can create a rendering context (subprocess probes)."""
    from wmbench.envs.dmc import GL_PACKAGES, probe_gl

    lines = [
        f"MUJOCO_GL={user_gl}"
        if user_gl
        else "MUJOCO_GL unset (wmbench picks egl, else osmesa, for DMC pixels)"
    ]
    try:
        import dm_control  # noqa: F401
    except Exception:
        return lines + ["rendering not checked: dm_control is not importable"]
    for backend, package in GL_PACKAGES.items():
        error = probe_gl(backend)
        lines.append(
            f"{backend}: " + ("works" if error is None else f"fails ({error}); apt-get install {package}")
        )
    return lines


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def torch_status() -> list[str]:
    try:
        import torch
    except ImportError as e:
        return [f"torch not importable ({e}); pip install torch==2.13.0"]
    lines = [
        f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
        f"{torch.get_num_interop_threads()} inter-op threads, {os.cpu_count()} CPUs"
    ]
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    flags = cpu_flags()
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    try:  # oneDNN's own answer; a private op, so only a hint
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        onednn = None
    lines.append(
        f"CPU: {platform.machine()}, torch kernels {capability}; bf16 "
        + (
            f"native ({', '.join(native)})"
            if native
            else "without native instructions (no avx512_bf16/amx_bf16)"
        )
        + ("" if onednn is None else f", oneDNN bf16 {'supported' if onednn else 'not supported'}")
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            lines.append(f"cuda:{i}: {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
        lines.append(
            f"CUDA {torch.version.cuda}; bf16 {'supported' if torch.cuda.is_bf16_supported() else 'not supported'}"
        )
    else:
        lines.append("CUDA: not available" + (" (CPU build of torch)" if torch.version.cuda is None else ""))
    return lines


def cli_doctor(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wmbench doctor", description="check suites, rendering and torch")
    parser.parse_args(argv)
    from wmbench import __version__

    user_gl = os.environ.get("MUJOCO_GL")  # before the DMC check may choose one for this process
    print(
        f"wmbench {__version__}, Python {platform.python_version()} ({sys.executable}), {platform.platform()}"
    )
    print("\nsuites:")
    rows = suite_status()
    print(_table(rows, ["suite", "status", "detail", "install"]))
    print("\nrendering (DMC pixels):")
    for line in gl_status(user_gl):
        print("  " + line)
    print("\ntorch:")
    for line in torch_status():
        print("  " + line)
    missing = [r[0] for r in rows if r[1] != "installed"]
    if missing:
        print(f"\n{len(missing)} suite(s) unavailable: {', '.join(missing)} (install commands above)")
    return 0
