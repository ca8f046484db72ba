"""The README's Python examples ("Using it from Python") run as written
against a real daemon ($SHMBROKER_SOCKET), each as a script of its own."""

import os
import re
import subprocess
import sys
import tempfile
import unittest

from harness import DaemonTest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def python_examples():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Using it from Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


class ReadmeTest(DaemonTest):
    def run_example(self, code):
        with tempfile.TemporaryDirectory() as work:
            script = os.path.join(work, "example.py")
            with open(script, "w") as f:
                f.write(code)
            env = dict(os.environ, SHMBROKER_SOCKET=self.daemon.socket)
            result = subprocess.run([sys.executable, script], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_examples(self):
        examples = python_examples()
        self.assertEqual(len(examples), 3)
        self.assertEqual(self.run_example(examples[0]), "")
        # The consumer's sum of the producer's 2**18 floats of 1.0.
        self.assertEqual(self.run_example(examples[1]), "262144.0\n")
        # Every label of the DataLoader's batches came through, once.
        self.assertEqual(self.run_example(examples[2]), "True\n")


if __name__ == "__main__":
    unittest.main()
