"""VS Code's variables view and data viewer, emulated from vscode-jupyter's sources: the
hidden execute requests they send (``store_history: false``, ``silent: false``) and how
they read the answer (the first output's text parsed as JSON; for the variables view, a
display its code updates from a thread). The helpers here are stand-ins of the same shape
as vscode-jupyter's (function names, arguments, how they answer), written for this test.
"""

from __future__ import annotations

import json
from typing import Any

from .harness import Kernel

#: The shape of vscode_datascience_helpers/getVariableInfo/vscodeGetVariableInfo.py: one
#: function, asked for "types" of %who_ls's names or "info" of one value, printing JSON.
GET_VARIABLE = '''def _VSCODE_getVariable(what_to_get, is_debugging, *args):
    import json as _VSCODE_json
    import builtins as _VSCODE_builtins

    def describe(name, value):
        return {"name": name, "type": type(value).__name__, "value": repr(value)}

    if what_to_get == "types":
        result = [describe(n, globals()[n]) for n in args[0]]
    else:
        result = describe("", args[0])
    return _VSCODE_builtins.print(_VSCODE_json.dumps(result))
'''

#: The shape of vscode_datascience_helpers/dataframes/vscodeDataFrame.py ("info", "rows").
GET_DATA_FRAME = '''def _VSCODE_getDataFrame(what_to_get, is_debugging, *args):
    import json as _VSCODE_json
    value = args[0]
    if what_to_get == "info":
        result = {"rowCount": len(value), "columns": [{"key": "0", "type": "int"}]}
    else:
        start, end = args[1], args[2]
        result = {"data": [[int(v)] for v in value[start:end]]}
    print(_VSCODE_json.dumps(result))
'''

CLEANUP = "\n\ntry:\n    del {name}\nexcept:\n    pass\n"

#: The shape of src/standalone/api/kernels/backgroundExecution.ts (variables view, 2024+).
BACKGROUND = '''def __jupyter_exec_background__():
    from IPython.display import display
    from threading import Thread
    from traceback import format_exc

    mime = "application/vnd.vscode.bg.execution.0"
    output = display({mime: ""}, raw=True, display_id=True)

    def do_implementation():
        import json
        variables= %who_ls
        return json.dumps([{"name": n, "value": repr(globals()[n])} for n in variables])

    def bg_main():
        try:
            output.update({mime + ".result": do_implementation()}, raw=True)
        except Exception as e:
            output.update({mime + ".error": format_exc()}, raw=True)

    Thread(target=bg_main, daemon=True).start()


__jupyter_exec_background__()
del __jupyter_exec_background__
'''


def execute_silently(kernel: Kernel, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """kernels/helpers.ts executeSilently: the reply and the outputs (IOPub messages)."""
    result = kernel.run(code, store_history=False, stop_on_error=False, allow_stdin=False)
    return result.content, result.outputs


def first_text(outputs: list[dict[str, Any]]) -> str:
    """pythonVariableRequester.ts extractJupyterResultText: the first output's text."""
    first = outputs[0]
    if first["msg_type"] == "execute_result":
        return str(first["content"]["data"]["text/plain"])
    assert first["msg_type"] == "stream" and first["content"]["name"] == "stdout", first
    return str(first["content"]["text"])


def test_variables_and_data_viewer_answer_with_rank_0s_values(kernel: Kernel) -> None:
    counted = kernel.ok("import numpy as np\nx = rank * 7\narr = np.arange(5) + rank")
    count = counted.content["execution_count"]
    # The variables view: %who_ls's names and their types (generateCodeToGetVariableTypes).
    reply, outputs = execute_silently(
        kernel, f"{GET_VARIABLE}\n\n_VSCODE_rwho_ls = %who_ls\n"
        "_VSCODE_getVariable(\"types\", False, _VSCODE_rwho_ls)"
        + CLEANUP.format(name="_VSCODE_getVariable") + CLEANUP.format(name="_VSCODE_rwho_ls"))
    assert reply["status"] == "ok" and len(outputs) == 1, outputs
    described = {v["name"]: v for v in json.loads(first_text(outputs))}
    assert described["x"] == {"name": "x", "type": "int", "value": "0"}  # rank 0's
    assert described["rank"]["value"] == "0"
    # One value in full (generateCodeToGetVariableInfo).
    reply, outputs = execute_silently(kernel, f"{GET_VARIABLE}\n\n_VSCODE_getVariable("
                                      "\"info\", False, arr)"
                                      + CLEANUP.format(name="_VSCODE_getVariable"))
    assert json.loads(first_text(outputs))["value"] == "array([0, 1, 2, 3, 4])"
    # The data viewer: info, then rows (dataFrameScriptGenerator.ts).
    _, outputs = execute_silently(kernel, f"{GET_DATA_FRAME}\n\n_VSCODE_getDataFrame("
                                  "\"info\", False, arr)"
                                  + CLEANUP.format(name="_VSCODE_getDataFrame"))
    assert json.loads(first_text(outputs))["rowCount"] == 5
    _, outputs = execute_silently(kernel, f"{GET_DATA_FRAME}\n\n_VSCODE_getDataFrame("
                                  "\"rows\", False, arr, 1, 3)"
                                  + CLEANUP.format(name="_VSCODE_getDataFrame"))
    assert json.loads(first_text(outputs)) == {"data": [[1], [2]]}
    # The interpreter's path, as helpers.node.ts asks for it: one line, unlabelled.
    _, outputs = execute_silently(kernel, "import sys as _VSCODE_sys\n"
                                  "print(_VSCODE_sys.executable); del _VSCODE_sys")
    assert first_text(outputs).endswith("python\n") and "[stdout" not in first_text(outputs)
    # None of it counted as a cell, or left a name behind on any rank.
    after = kernel.ok("print(sorted(n for n in dir() if 'VSCODE' in n), x)")
    assert after.content["execution_count"] == count + 1
    assert after.per_rank() == {r: [f"[] {r * 7}"] for r in range(4)}


def test_the_variables_views_background_thread_answers_before_the_reply(
        kernel: Kernel) -> None:
    kernel.ok("y = rank + 100")
    reply, outputs = execute_silently(kernel, BACKGROUND)
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in outputs]
    assert kinds == ["display_data", "update_display_data"], outputs
    display_id = outputs[0]["content"]["transient"]["display_id"]
    update = outputs[1]["content"]
    assert update["transient"]["display_id"] == display_id
    values = json.loads(update["data"]["application/vnd.vscode.bg.execution.0.result"])
    assert {"name": "y", "value": "100"} in values  # rank 0's


def test_the_rule_leaves_other_requests_as_cells(kernel: Kernel) -> None:
    # The same helper in a cell of the user's (it stores history): every rank answers.
    result = kernel.ok(f"{GET_VARIABLE}\n\n_VSCODE_getVariable(\"info\", False, rank)")
    assert sorted(result.per_rank()) == [0, 1, 2, 3]
    # VS Code's start-up code changes each rank's state: it runs on every rank.
    result = kernel.run("import os as _VSCODE_os\n_VSCODE_os.chdir(_VSCODE_os.getcwd())\n"
                        "print(_VSCODE_os.getpid() > 0)\ndel _VSCODE_os", store_history=False)
    assert result.text() == "[stdout:0-3] True\n"
