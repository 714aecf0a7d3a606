"""TensorFlow's noise kept off the terminal (`study.logs.without_noise`), for this process and
the worker processes it spawns."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, subprocess, sys, threading
    from study import logs

    def worker():
        os.write(2, b"I0000 00:00:1795767266.793570    6917 cudart_stub.cc:31] no GPU\\n")
        os.write(2, b"worker says hello\\n")

    if __name__ == "__main__":
        before = threading.active_count()
        with logs.without_noise():
            lingering = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            process = multiprocessing.get_context("spawn").Process(target=worker)
            process.start()
            process.join()
        print("forwarder still running" if threading.active_count() > before else "ended")
        lingering.kill()
    """
)


def test_the_filter_ends_with_its_block_though_a_process_it_started_lives_on(tmp_path):
    # as multiprocessing's and joblib's resource trackers do, holding the filter's pipe open
    script = tmp_path / "spawning.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "ended"
    assert "worker says hello" in done.stderr
    assert "cudart_stub" not in done.stderr
