"""`chain apply` on batches, end to end: real files in temporary folders, the CLI in a child process.

Globs expanded by the CLI with the folder tree mirrored, manifests, failure isolation, collisions refused
before any work, resume after Ctrl-C, settings that invalidate the resume record, local worker
processes, and the Ray executor on a real local cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import write_impulse_response

SR = 44100
STATE = ".pedalchain-state.json"
REPORT = "chain-report.json"
GAIN_YAML = "name: my\nsteps:\n  - plugin: Gain\n    gain_db: -6\n"
VERB_YAML = "steps:\n  - plugin: Compressor\n    threshold_db: -20\n  - plugin: Reverb\n    room_size: 0.7\n"
SLOW_YAML = "steps:\n  - plugin: Reverb\n  - plugin: Chorus\n  - plugin: Phaser\n  - plugin: Reverb\n"


def write_music(path: Path, seconds: float = 1.0, seed: int = 0, subtype: str = "PCM_16") -> Path:
    """Seeded stereo noise with a tone, so every file differs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * seed) * t)
    audio = np.stack([tone, tone], axis=1) + 0.05 * rng.standard_normal((t.size, 2))
    sf.write(path, audio.astype(np.float32), SR, subtype=subtype)
    return path


def run_cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `chain` in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pedalchain.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=env,
    )


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden ones included), as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp", ".rf64"))]


def report(folder: Path) -> dict:
    return json.loads((folder / REPORT).read_text())


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """cat/a/x.wav, cat/a/y.flac, cat/b/c/z.wav (1 s stereo, different content)."""
    write_music(tmp_path / "cat" / "a" / "x.wav", seed=1)
    write_music(tmp_path / "cat" / "a" / "y.flac", seed=2, subtype="PCM_24")
    write_music(tmp_path / "cat" / "b" / "c" / "z.wav", seed=3)
    (tmp_path / "my.yaml").write_text(GAIN_YAML)
    return tmp_path / "cat"


def test_glob_is_expanded_and_the_tree_mirrored(tmp_path, catalogue):
    result = run_cli("apply", "my.yaml", "cat/**/*.*", "-o", "out/", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert files_under(out) == sorted([STATE, REPORT, "a/x.wav", "a/y.flac", "b/c/z.wav"])
    assert sf.info(out / "a" / "y.flac").subtype == "PCM_24"
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["out/a/x.wav", "out/a/y.flac",
                                                                          "out/b/c/z.wav"]
    assert "3 files: 3 done, 0 skipped, 0 failed" in result.stderr and "Traceback" not in result.stderr
    summary = report(out)
    assert (summary["done"], summary["failed"], summary["interrupted"]) == (3, 0, False)
    assert summary["audio_hours"] == pytest.approx(3.0 / 3600)


def test_a_glob_covering_the_output_folder_leaves_the_outputs_out(tmp_path, catalogue):
    assert run_cli("apply", "my.yaml", "cat/**/*.wav", "-o", "cat/out/", cwd=tmp_path).returncode == 0
    result = run_cli("apply", "my.yaml", "cat/**/*.wav", "-o", "cat/out/", "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "left out 2 files" in result.stderr and "2 skipped" in result.stderr
    assert files_under(tmp_path / "cat" / "out") == sorted([STATE, REPORT, "a/x.wav", "b/c/z.wav"])


def test_a_glob_rerun_beside_the_inputs_leaves_the_outputs_out(tmp_path, catalogue):
    first = run_cli("apply", "my.yaml", "cat/**/*.wav", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (catalogue / "a" / "x.my.wav").exists() and not (tmp_path / REPORT).exists()
    again = run_cli("apply", "my.yaml", "cat/**/*.wav", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "left out 2 files matching the pattern named like outputs of this chain (*.my.*)" in again.stderr
    assert "2 files: 2 done" in again.stderr and not list(catalogue.rglob("*.my.my.wav"))


@pytest.mark.parametrize("pattern", ["cat/**/*.mp3", "nowhere/*.wav"])
def test_a_glob_without_matches_is_one_line_exit_2(tmp_path, catalogue, pattern):
    result = run_cli("apply", "my.yaml", pattern, "-o", "out/", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"chain: error: {pattern}: no files match this pattern"]
    assert not (tmp_path / "out").exists()


def test_manifest_paths_are_relative_to_its_folder(tmp_path, catalogue):
    manifest = tmp_path / "list.txt"
    manifest.write_text("# the good ones\ncat/a/x.wav\n\n   cat/b/c/z.wav  \n# gone:\ncat/missing.wav\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "my.yaml").write_text(GAIN_YAML)
    result = run_cli("apply", "my.yaml", str(manifest), "-o", "out/", cwd=elsewhere)
    assert result.returncode == 1, result.stderr
    out = elsewhere / "out"
    assert files_under(out) == sorted([STATE, REPORT, "cat/a/x.wav", "cat/b/c/z.wav"])
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("chain: error:")]
    assert len(error_lines) == 1 and "missing.wav: no such file (listed in" in error_lines[0]
    assert f"{manifest}:6" in error_lines[0]
    summary = report(out)
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert summary["failures"][0]["input"].endswith("cat/missing.wav")
    assert "list.txt:6" in summary["failures"][0]["error"]


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_manifest_is_one_line_exit_2(tmp_path, catalogue, text):
    (tmp_path / "list.txt").write_text(text)
    result = run_cli("apply", "my.yaml", "list.txt", "-o", "out/", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "list.txt: manifest lists no files" in result.stderr


def test_one_garbage_file_fails_alone(tmp_path, catalogue):
    (catalogue / "a" / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    result = run_cli("apply", "my.yaml", "cat/**/*.wav", "-o", "out/", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    out = tmp_path / "out"
    assert files_under(out) == sorted([STATE, REPORT, "a/x.wav", "b/c/z.wav"])
    assert "Traceback" not in result.stderr
    assert "2 done, 0 skipped, 1 failed" in result.stderr
    failures = report(out)["failures"]
    assert [f["input"] for f in failures] == ["cat/a/garbage.wav"]
    assert "not a readable audio file" in failures[0]["error"]
    assert f"chain: error: {failures[0]['error']}" in result.stderr.splitlines()


def test_failed_files_leave_no_empty_folders_and_spare_their_neighbours(tmp_path, catalogue):
    """Output folders are made before the workers start and the empty ones removed at the end: a worker that made
    its folder and removed it when its file failed could pull it from under a sibling writing there."""
    for name in ("a/garbage1.wav", "a/garbage2.wav", "d/e/garbage3.wav"):
        (catalogue / name).parent.mkdir(parents=True, exist_ok=True)
        (catalogue / name).write_bytes(np.random.default_rng(0).bytes(5000))
    result = run_cli("apply", "my.yaml", "cat/**/*.wav", "-o", "out/", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 1 and "2 done, 0 skipped, 3 failed" in result.stderr, result.stderr
    out = tmp_path / "out"
    folders = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir())
    assert folders == ["a", "b", "b/c"]


def test_collisions_are_refused_before_any_work(tmp_path, catalogue):
    write_music(tmp_path / "cat" / "a" / "x.flac", seed=4)  # x.wav and x.flac -> both out/a/x.flac
    result = run_cli("apply", "my.yaml", "cat/**/*.*", "-o", "out/", "--format", "flac", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "both cat/a/x.flac and cat/a/x.wav would be written here" in lines[0]
    assert files_under(tmp_path / "out") == []
    # manifest entries outside the manifest's folder go to the top by name: two s.wav collide
    lists = tmp_path / "lists"
    lists.mkdir()
    write_music(tmp_path / "p" / "s.wav")
    write_music(tmp_path / "q" / "s.wav")
    (lists / "l.txt").write_text("../p/s.wav\n../q/s.wav\n")
    result = run_cli("apply", "my.yaml", "lists/l.txt", "-o", "out2/", cwd=tmp_path)
    assert result.returncode == 2 and "both" in result.stderr
    assert files_under(tmp_path / "out2") == []


def test_two_workers_write_the_same_bytes_as_one(tmp_path):
    for i in range(6):
        write_music(tmp_path / "in" / f"s{i}.wav", seconds=2.0, seed=i)
    (tmp_path / "verb.yaml").write_text(VERB_YAML)
    one = run_cli("apply", "verb.yaml", "in/*.wav", "-o", "one/", "--jobs", "1", "--json", cwd=tmp_path)
    two = run_cli("apply", "verb.yaml", "in/*.wav", "-o", "two/", "--jobs", "2", "--json", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    names = [f"s{i}.wav" for i in range(6)]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    outputs = sorted(Path(json.loads(line)["output"]).name for line in two.stdout.splitlines())
    assert outputs == names
    assert report(tmp_path / "two")["executor"] == "local" and report(tmp_path / "two")["workers"] == 2


def _mtimes(folder: Path) -> dict[str, int]:
    return {name: (folder / name).stat().st_mtime_ns for name in files_under(folder) if name.endswith(".wav")}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_resume_after_ctrl_c_renders_only_the_missing_files(tmp_path, jobs):
    count = 10
    for i in range(count):
        write_music(tmp_path / "in" / f"d{i % 2}" / f"s{i:02d}.wav", seconds=6.0, seed=i)
    (tmp_path / "slow.yaml").write_text(SLOW_YAML)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pedalchain.cli", "apply", "slow.yaml", "in/**/*.wav", "-o", "out/",
               "--jobs", jobs, "--block", "512"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(_mtimes(out) if out.exists() else {}) < 2:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C on a terminal: to the command and its workers
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert no_partial_files(out)
    finished = _mtimes(out)
    assert 2 <= len(finished) < count, f"interrupt came too late to test anything: {finished}"
    state = json.loads((out / STATE).read_text())
    assert sorted(state["files"]) == sorted(finished)  # the record matches what is on disk
    assert report(out)["interrupted"] is True

    result = run_cli("apply", "slow.yaml", "in/**/*.wav", "-o", "out/", "--resume", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    skipped = sorted(Path(line["output"]).relative_to("out").as_posix() for line in lines if line.get("skipped"))
    assert skipped == sorted(finished)
    assert len(lines) == count and f"{count - len(finished)} done, {len(finished)} skipped" in result.stderr
    after = _mtimes(out)
    assert len(after) == count
    assert {name: after[name] for name in finished} == finished  # the finished files were not touched


def _spawned_workers(parent: int) -> list[int]:
    """Process ids of the multiprocessing workers whose parent is ``parent`` (Linux /proc)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and "multiprocessing.spawn" in command:
            workers.append(int(entry.name))
    return workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_a_worker_that_dies_is_replaced_and_its_files_rendered(tmp_path):
    count = 8
    for i in range(count):
        write_music(tmp_path / "in" / f"s{i}.wav", seconds=6.0, seed=i)
    (tmp_path / "slow.yaml").write_text(SLOW_YAML)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pedalchain.cli", "apply", "slow.yaml", "in/*.wav", "-o", "out/", "--jobs", "2",
         "--block", "512"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and not no_partial_files(out)):
        time.sleep(0.02)
    workers = _spawned_workers(process.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)  # what a plugin crashing its process looks like
    stdout, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert no_partial_files(out)
    assert [name for name in files_under(out) if name.endswith(".wav")] == [f"s{i}.wav" for i in range(count)]
    assert report(out)["done"] == count and len(stdout.splitlines()) == count


def test_a_settings_change_invalidates_the_resume_record(tmp_path):
    write_music(tmp_path / "in" / "a.wav", seed=1)
    write_music(tmp_path / "in" / "b.wav", seed=2)
    ir = write_impulse_response(tmp_path / "room.wav")
    (tmp_path / "conv.yaml").write_text("steps:\n  - plugin: Convolution\n    impulse_response_filename: room.wav\n")
    base = ["apply", "conv.yaml", "in/*.wav", "-o", "out/", "--json"]
    first = run_cli(*base, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rendered = _mtimes(tmp_path / "out")

    same = run_cli(*base, "--resume", cwd=tmp_path)
    assert same.returncode == 0 and all(json.loads(line).get("skipped") for line in same.stdout.splitlines())
    assert _mtimes(tmp_path / "out") == rendered

    tail = run_cli(*base, "--resume", "--tail", "1", cwd=tmp_path)  # a stale output of ours is replaced
    assert tail.returncode == 0, tail.stderr
    assert not any(json.loads(line).get("skipped") for line in tail.stdout.splitlines())
    assert sf.info(tmp_path / "out" / "a.wav").frames == 2 * SR
    rendered = _mtimes(tmp_path / "out")

    write_impulse_response(ir, seed=8)  # same file name, other content: the chain hash changes
    changed = run_cli(*base, "--resume", "--tail", "1", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert "2 done, 0 skipped" in changed.stderr
    assert all(rendered[name] != mtime for name, mtime in _mtimes(tmp_path / "out").items())


def test_resume_needs_an_output_folder_and_bad_jobs_are_refused(tmp_path, catalogue):
    result = run_cli("apply", "my.yaml", "cat/a/x.wav", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and "--resume: needs an output folder" in result.stderr
    result = run_cli("apply", "my.yaml", "cat/a/x.wav", "--jobs", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--jobs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cat" / "a" / "x.my.wav").exists()


def test_ray_executor_without_ray_names_the_extra(tmp_path, catalogue):
    fake = tmp_path / "no-ray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("apply", "my.yaml", "cat/**/*.wav", "-o", "out/", "--executor", "ray", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["chain: error: --executor: the Ray executor needs the ray package: pip install 'pedalchain[ray]'"]
    assert not (tmp_path / "out").exists()


# -- Ray, on a real local cluster --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require_ray() -> str:
    """Path of the `ray` command beside this interpreter; skip (fail on CI) when ray is not installed."""
    ray_cli = Path(sys.executable).parent / "ray"
    try:
        import ray  # noqa: F401
    except ImportError:
        ray_cli = None
    if ray_cli is None or not ray_cli.exists():
        reason = "ray is not installed: pip install 'pedalchain[ray]' to run the Ray executor test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        print(reason)
        pytest.skip(reason)
    return str(ray_cli)


class RayHead(str):
    """A Ray head's address; ``session`` is the id of the process session its processes (actors too) run in."""

    session: int


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayHead]:
    """A 2-CPU Ray head on this machine for this module; yields its address, stops it (only it) afterwards.

    `ray start --block` in its own session: SIGTERM to that one process shuts down the processes it
    started; `ray stop` is not used because it kills every Ray process on the machine.
    """
    ray_cli = _require_ray()
    temp_dir = tempfile.mkdtemp(prefix="pcray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    command = [ray_cli, "start", "--head", "--block", "--num-cpus", "2", "--port", str(port), "--temp-dir", temp_dir,
               "--include-dashboard=false", "--disable-usage-stats", "--dashboard-port", str(_free_port()),
               "--dashboard-agent-listen-port", str(_free_port())]  # other clusters here keep their ports
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for_start(head)
        address = RayHead(f"127.0.0.1:{port}")
        address.session = head.pid  # start_new_session: the session's id is its leader's pid
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the session we created for it, and nothing else
            head.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_start(head: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Read `ray start`'s output until it says the runtime started (then keep draining it in the background)."""
    started = threading.Event()
    output: list[str] = []

    def drain() -> None:
        for line in head.stdout:
            output.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not started.wait(0.2):
        if head.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start did not come up (exit {head.poll()}): {''.join(output)[-2000:]}")


def test_ray_executor_on_a_local_cluster(tmp_path, ray_cluster):
    for i in range(5):
        write_music(tmp_path / "in" / f"d{i % 2}" / f"s{i}.wav", seconds=2.0, seed=i)
    (tmp_path / "in" / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "verb.yaml").write_text(VERB_YAML)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    result = run_cli("apply", "verb.yaml", "in/**/*.wav", "-o", "ray/", "--executor", "ray", "--address", "auto",
                     cwd=tmp_path, env=env, timeout=90)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    summary = report(tmp_path / "ray")
    assert (summary["executor"], summary["workers"], summary["done"], summary["failed"]) == ("ray", 2, 5, 1)
    assert summary["failures"][0]["input"] == "in/garbage.wav"
    errors = [line for line in result.stderr.splitlines() if line.startswith("chain: error:")]
    assert errors == ["chain: error: in/garbage.wav: not a readable audio file (Format not recognised.)"]
    local = run_cli("apply", "verb.yaml", "in/**/*.wav", "-o", "local/", cwd=tmp_path)
    names = [name for name in files_under(tmp_path / "local") if name.endswith(".wav")]
    assert len(names) == 5
    for name in names:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert local.returncode == 1 and no_partial_files(tmp_path / "ray")

    again = run_cli("apply", "verb.yaml", "in/**/*.wav", "-o", "ray/", "--executor", "ray", "--resume",
                    cwd=tmp_path, env=env, timeout=90)
    assert again.returncode == 1 and "0 done, 5 skipped, 1 failed" in again.stderr, again.stderr


def _slow_ray_run(tmp_path: Path, ray_cluster: str, count: int) -> tuple[subprocess.Popen, Path, dict[str, str]]:
    """``count`` 6-s files through SLOW_YAML on the Ray cluster, started in its own session: (process, out, env)."""
    for i in range(count):
        write_music(tmp_path / "in" / f"s{i:02d}.wav", seconds=6.0, seed=i)
    (tmp_path / "slow.yaml").write_text(SLOW_YAML)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    process = subprocess.Popen(
        [sys.executable, "-m", "pedalchain.cli", "apply", "slow.yaml", "in/*.wav", "-o", "out/", "--executor", "ray",
         "--address", "auto", "--block", "512"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    return process, tmp_path / "out", env


def test_ray_executor_stops_cleanly_on_ctrl_c_and_resumes(tmp_path, ray_cluster):
    count = 10
    process, out, env = _slow_ray_run(tmp_path, ray_cluster, count)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(_mtimes(out) if out.exists() else {}) < 2:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and no_partial_files(out)
    finished = _mtimes(out)
    assert 2 <= len(finished) < count, finished
    assert sorted(json.loads((out / STATE).read_text())["files"]) == sorted(finished)
    result = run_cli("apply", "slow.yaml", "in/*.wav", "-o", "out/", "--executor", "ray", "--resume",
                     cwd=tmp_path, env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    assert f"{count - len(finished)} done, {len(finished)} skipped" in result.stderr
    after = _mtimes(out)
    assert len(after) == count and {name: after[name] for name in finished} == finished


def test_a_retried_file_is_sent_alone():
    """Ray tasks carry several files; when a task's worker dies, each of its files is retried in a task of its
    own, so the file that crashes it again takes no other file down with it."""
    from pedalchain.chains.batch import WorkItem, WorkQueue

    queue = WorkQueue([WorkItem(i, f"in{i}.wav", f"out{i}.wav", False) for i in range(6)])
    first = queue.pop_many(4)
    assert [item.index for item in first] == [0, 1, 2, 3]
    for item in first:
        assert queue.retry(item)
    assert [[item.index for item in queue.pop_many(4)] for _ in range(4)] == [[0], [1], [2], [3]]
    assert [item.index for item in queue.pop_many(4)] == [4, 5]
    assert not queue.retry(first[0]) and queue.pop_many(4) == []


def _ray_render_workers(session: int) -> list[int]:
    """Process ids of the actors of the Ray head in ``session`` rendering a task of ours (Ray titles them
    ``ray::RayWorker.render``); other clusters on the machine are left alone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
            process_session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if command.startswith("ray::RayWorker.render") and process_session == session:
            found.append(int(entry.name))
    return found


def test_a_ray_worker_that_dies_is_replaced_and_its_files_rendered(tmp_path, ray_cluster):
    """A task carries several files: when its actor dies (a plugin crashing the process), each of them is retried
    alone on a fresh actor, and every file is rendered once the run ends."""
    count = 10
    process, out, _ = _slow_ray_run(tmp_path, ray_cluster, count)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (_ray_render_workers(ray_cluster.session) and out.exists()
                                               and not no_partial_files(out)):
        time.sleep(0.02)
    workers = _ray_render_workers(ray_cluster.session)
    assert workers, "no Ray actor found rendering"
    os.kill(workers[0], signal.SIGKILL)
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in err and no_partial_files(out)
    assert [name for name in files_under(out) if name.endswith(".wav")] == [f"s{i:02d}.wav" for i in range(count)]
    assert report(out)["done"] == count and len(stdout.splitlines()) == count


@pytest.mark.parametrize("how", ["--address", "RAY_ADDRESS"])
def test_a_ray_address_where_nothing_answers_is_one_line_exit_2(tmp_path, catalogue, how):
    """ray.init retries a dead address for minutes, logging every try; we say so in one line within seconds."""
    _require_ray()
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "RAY_ADDRESS": address} if how == "RAY_ADDRESS" else None
    argv = ["apply", "my.yaml", "cat/**/*.wav", "-o", "out/", "--executor", "ray", "--address",
            address if how == "--address" else "auto"]
    started = time.monotonic()
    result = run_cli(*argv, cwd=tmp_path, env=env, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"chain: error: --address: cannot connect to a Ray cluster at {address}: nothing answers there "
        "(Connection refused); start one with `ray start --head`"]
    assert not (tmp_path / "out").exists()


def test_output_format_is_accepted_in_any_case(tmp_path, catalogue):
    result = run_cli("apply", "my.yaml", "cat/a/x.wav", "-o", "out/", "--format", "FLAC", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "out") == sorted([STATE, "x.flac"])
