"""Where a run comes from: the command that made it, the commit of the code, the machine."""

from __future__ import annotations

import functools
import os
import platform
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SOURCE_ENV = "STUDY_SOURCE_NAME"  # the command that makes the runs, set by the command line


def set_source(words: list[str]) -> None:
    """Name the command that makes this process's runs (`mlflow.source.name`), without the
    credentials of any URI in it; processes it starts inherit the name through the
    environment."""
    shown = []
    for word in words:
        key, sep, value = word.partition("=") if word.startswith("-") else ("", "", word)
        shown.append(key + sep + redact(value))
    os.environ[SOURCE_ENV] = shlex.join(shown)


def source_tags() -> dict[str, str]:
    """The command that made a run and, in a git checkout, the commit of the code."""
    tags = {"mlflow.source.type": "LOCAL"}
    if SOURCE_ENV in os.environ:
        tags["mlflow.source.name"] = os.environ[SOURCE_ENV]
    if commit := _git_commit():
        tags["mlflow.source.git.commit"] = commit
    return tags


@functools.cache
def _git_commit() -> str | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return answer.stdout.strip() if answer.returncode == 0 else None


def machine() -> dict[str, str]:
    """What the timings were measured on: CPU model and cores, GPU if any, library versions."""
    import keras
    import tensorflow as tf

    gpus = [
        tf.config.experimental.get_device_details(device).get("device_name", device.name)
        for device in tf.config.list_physical_devices("GPU")
    ]
    described = {
        "cpu": _cpu_model(),
        "cpu_cores": str(os.cpu_count()),
        "gpu": ", ".join(gpus) or "none",
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    device = f"GPU {described['gpu']}" if gpus else "no GPU"
    described["machine"] = (
        f"{described['cpu']}, {described['cpu_cores']} cores, {device}, "
        f"TensorFlow {described['tensorflow']}"
    )
    return described


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def redact(uri: str) -> str:
    """The URI without user name, password or token, safe to print and to log."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    query = re.sub(r"(?i)(token|password|secret|key)=[^&]*", r"\1=***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
