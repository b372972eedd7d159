"""The jupyter_kernel_test conformance suite against a 2-rank hub kernel."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jupyter_kernel_test

from hpckernel.kernelspec import write_kernel_spec


class HubKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "hpckernel-conformance"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    code_page_something = "%%local\nprint?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [{"code": "6 * 7", "result": "[out:0-1] 42"},
                           {"code": "%%local\n6 * 7", "result": "42"}]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>hi</b>'))",
         "mime": "text/html"},
    ]
    code_history_pattern = "6 *"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    completion_samples = [{"text": "zi", "matches": {"zip"}}]

    @classmethod
    def setUpClass(cls) -> None:
        cls._dir = tempfile.mkdtemp()
        write_kernel_spec(Path(cls._dir) / "kernels" / cls.kernel_name, ranks=2)
        cls._old_path = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = cls._dir
        super().setUpClass()
        # Wait for the ranks once, so that no test's first output is the
        # "[hpckernel] waiting for 2 ranks to start" display (a loaded machine starts slowly).
        cls.kc.execute_interactive("pass", timeout=120)

    def flush_channels(self) -> None:
        """The suite's flush, made certain: it drains what has arrived, but it runs right
        after a reply, and the kernel's idle status for that request (IOPub is another
        socket) may still be on its way — then read as the end of the suite's next cell.
        A kernel_info request's own idle status comes after every earlier message on
        IOPub: wait for it."""
        super().flush_channels()
        msg_id = self.kc.kernel_info()
        while self.kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
            pass
        while True:
            msg = self.kc.get_iopub_msg(timeout=30)
            if (msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                return

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        if cls._old_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = cls._old_path
        shutil.rmtree(cls._dir, ignore_errors=True)
