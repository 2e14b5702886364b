"""``python -m quetzal_deploy`` / ``quetzal-deploy``: commands run outside a model repo's invoke
tasks (today: ``adopt``, which makes an existing repo one of ours)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quetzal_deploy.errors import QuetzalError


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="quetzal-deploy", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)
    adopt = commands.add_parser(
        "adopt", help="make an existing model repo (old layout, or baked without .quetzal-template.json) "
        "one of ours, in place, as one commit")
    adopt.add_argument("path", nargs="?", default=".", type=Path, help="the model repo (default: here)")
    adopt.add_argument("--yes", action="store_true", help="commit without asking (the answers and the "
                       "file list are still printed)")
    adopt.add_argument("--force", action="store_true", help="take the template's version of scaffolding "
                       "files the repo has its own of (the old ones stay in git history)")
    adopt.add_argument("--tfvars", type=Path, help="the model's tfvars of the backend's Terraform "
                       "(infra/models/environments/<model>.tfvars): sizes, region, identity pool")
    adopt.add_argument("--live", action="store_true", help="read the deployed function's sizes, the "
                       "bucket's CORS origins and the user role's identity pool (AWS credentials needed)")
    adopt.add_argument("--profile", help="AWS profile for --live")
    return main


def confirm_with(yes: bool):
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise QuetzalError(f"{question} No terminal to ask on: re-run with --yes to confirm.")
        return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}

    return confirm


def adopt(args: argparse.Namespace) -> int:
    from quetzal_deploy.adopt.answers import derive, live_answers
    from quetzal_deploy.adopt.repo import adopt as adopt_repo

    live = None
    if args.live:
        import boto3

        live = live_answers(lambda region: boto3.Session(profile_name=args.profile, region_name=region))
    found = derive(args.path.resolve(), args.tfvars, live)
    if found.ecs_mode:
        raise QuetzalError(
            f"{found.answers['model_name']} runs in the backend's whole-model ECS mode (ecs_memory_size > 0, "
            "no Lambda): our stack runs notebooks as Lambda steps (and single Fargate steps), so there is "
            "nothing to adopt it into yet. Keep it on the backend's Terraform; to move it, give it a "
            "lambda_memory_size (or mark its heavy steps as Fargate steps) and deploy it as a new model.")
    print(f"Answers for {found.answers['model_name']} ({'a production stack' if found.legacy else 'ours'}):")
    print(found.table())
    return 0 if adopt_repo(args.path.resolve(), found, confirm_with(args.yes), args.force) else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return adopt(args)
    except QuetzalError as ex:
        print(f"ERROR: {ex}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
