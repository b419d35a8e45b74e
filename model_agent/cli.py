"""The ``model-agent`` command: argument parsing and dispatch to one module per subcommand.

Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from model_agent import errors, logs, settings

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _help_for(flag: settings.Flag) -> str:
    env = f" [env {', '.join('$' + e for e in flag.env)}]" if flag.env else ""
    default = "unset" if flag.default is None else flag.default
    return f"{flag.help} (default: {default}){env}"


def _add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    for flag in settings.FLAGS:
        if command in flag.commands:
            parser.add_argument(
                flag.flag, dest=flag.field, default=None, metavar="VALUE", help=_help_for(flag)
            )


def _add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    parser.add_argument(
        "-n",
        "--namespace",
        dest="models_namespace",
        default=None,
        help="namespace of the BaseModels (default: the context's); ClusterBaseModels always show",
    )
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="BaseModels of every namespace"
    )
    parser.add_argument(
        "--agent-namespace",
        default="ome",
        help="namespace of the agents' per-node ConfigMaps (the agents' --namespace; default: ome)",
    )
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    parser.add_argument(
        "-w", "--watch", action="store_true", help="keep refreshing (Ctrl-C to stop)"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes with --watch"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-agent",
        description="Per-node model distribution agent for Kubernetes (OME-compatible).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the operator on this node (Kopf, standalone)",
        description="Watch BaseModels and ClusterBaseModels cluster-wide "
        "and keep this node's models downloaded, verified and reported.",
    )
    _add_flags(run, "run")

    pull = commands.add_parser(
        "pull",
        help="download, verify and analyse one model, no cluster",
        description="Pin, download, verify and place one model, then "
        "print its analysis (the ConfigMap 'config' object) as JSON.",
    )
    pull.add_argument(
        "uri", help="storage URI, e.g. hf://org/repo[@rev] or oci://n/NS/b/BUCKET/o/PREFIX"
    )
    pull.add_argument("--path", required=True, help="destination directory")
    pull.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="storage parameter (token, allow, ignore, auth, region, profile, "
        "endpoint, modelFormat); repeatable",
    )
    pull.add_argument(
        "--shape", default=None, help="GPU shape alias for TensorRT-LLM filtering (default: detect)"
    )
    pull.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on a terminal, log each file (INFO) above the progress display; without it "
        "only warnings and errors are logged there unless --log-level is given",
    )
    _add_flags(pull, "pull")

    inspect = commands.add_parser(
        "inspect",
        help="analyse a model folder and print JSON",
        description="Read config.json and safetensors headers of a "
        "model folder (read-only) and print the analysis as JSON.",
    )
    inspect.add_argument("directory", help="model folder")
    _add_flags(inspect, "inspect")

    status = commands.add_parser(
        "status",
        help="the fleet view: every model's rollout across the nodes",
        description="One row per model with its nodes Ready / Updating / Failed / selected, "
        "one line per node with progress, speed, ETA and failure reasons. Also installed as "
        "the kubectl plugin kubectl-model_agent: kubectl model-agent status.",
    )
    _add_status_arguments(status)
    _add_flags(status, "status")

    gpu = commands.add_parser(
        "gpu-shape",
        help="print this machine's GPU inventory and shape",
        description="Detect GPUs with NVML (or the instance-type map) "
        "and print the inventory, the shape alias and its source.",
    )
    gpu.add_argument(
        "--instance-type", default=None, help="node instance type to map through $INSTANCE_TYPE_MAP"
    )
    _add_flags(gpu, "gpu-shape")
    return parser


log = logging.getLogger("model_agent.cli")


def _settings_from(args: argparse.Namespace) -> settings.Settings:
    flags = {f.field: getattr(args, f.field, None) for f in settings.FLAGS}
    return settings.resolve(flags, os.environ)


def _log_level(args: argparse.Namespace, config: settings.Settings) -> str:
    """``pull`` on a terminal logs warnings and errors only, unless ``-v`` (INFO) or an
    explicit ``--log-level``/``$MODEL_AGENT_LOG_LEVEL``: the progress display shows the rest."""
    if args.command != "pull":
        return config.log_level
    explicit = args.log_level is not None or bool(os.environ.get("MODEL_AGENT_LOG_LEVEL"))
    if args.verbose:
        return config.log_level if explicit and config.log_level == "debug" else "info"
    if explicit or not sys.stderr.isatty():
        return config.log_level
    return "warning"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _settings_from(args)
        level = _log_level(args, config)
        logs.configure(level=level, fmt=config.log_format, node=config.node_name)
        if args.command in ("run", "pull"):
            from model_agent.egress import clients, policy

            clients.ssl_context(config.egress.ca)  # an unreadable CA bundle stops here, named
            egress = config.egress
            if egress.metadata.enabled or egress.data.enabled or config.ca_bundle:
                log.info("%s", policy.describe(egress))
        if args.command == "run":
            from model_agent import cli_run

            return cli_run.run(config)
        if args.command == "pull":
            from model_agent import cli_pull

            return cli_pull.run(args, config)
        if args.command == "status":
            from model_agent import cli_status

            return cli_status.run(args)
        if args.command == "inspect":
            from model_agent import cli_inspect

            return cli_inspect.run(args, config)
        from model_agent import cli_gpu

        return cli_gpu.run(args, config)
    except errors.ConfigError as exc:
        print(f"model-agent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.AgentError as exc:
        print(f"model-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
