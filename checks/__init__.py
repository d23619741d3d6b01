"""tffexec.checks: may this computation run? Static analysis, graph reading and the op policy.

Everything here reads protos only: nothing is executed and TensorFlow is never imported, so
`tffexec inspect` and `tffexec validate` stay fast and `validate` reports what `run` refuses.

Modules
=======
* `ast_walk`  — the AST walker shared by the others (`walk`, `children`, AST paths).
* `analysis`  — one pass over a computation: its summary and every problem that would stop a run
                (per-node-kind rules in a table).
* `graphs`    — the TensorFlow GraphDefs inside `tensorflow` nodes, parsed without TensorFlow.
* `allowlist` — the names of the pure computation ops a computation may use.
* `op_check`  — applies a `tffexec.policy.Policy` to graphs, dataset graphs and argument values.
* `intrinsic_types` — an intrinsic's declared type against its definition.
* `argument_functions` — computations inside argument values (function-typed parameters).
* `tf_ops`    — the names TensorFlow registers as ops (`tf_op_names`, generated), so that a
                function library shadowing one is refused.

`tffexec.policy.Policy` itself is plain data (the flags' values); the enforcement lives here.
The layers: `checks` imports `tffexec.errors`, `tffexec.intrinsics`, `tffexec.policy` and
`tffexec.formats`; it is imported by `tffexec.preflight`, the executors that admit graphs, and
the CLI.
"""
