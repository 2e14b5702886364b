"""Infrastructure flows: infra, deploy, destroy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Exit

from quetzal_deploy.tasks.common import AWS_HELP, ask, aws_for, confirmed, quetzal_task, settings_for

if TYPE_CHECKING:
    from quetzal_deploy.infra.stack import Stack

YES_HELP = "apply without asking (for scripts)"


def confirmer(yes: bool):
    """The confirmation the flows call before each apply."""
    return (lambda question: True) if yes else confirmed


def stack_for(profile: str | None, region: str | None) -> Stack:
    from quetzal_deploy.infra import stack as stack_flows

    settings = settings_for(profile, region)
    return stack_flows.Stack(settings, aws_for(settings))


# No short flags: -p would be --plan-only here but --profile in every other task.
@quetzal_task(auto_shortflags=False,
              help={"plan_only": "show what would change and apply nothing", "yes": YES_HELP, **AWS_HELP})
def infra(c, plan_only=False, yes=False, profile=None, region=None):
    """Create or update the model's AWS stack with Terraform: plan, confirm, apply."""
    from quetzal_deploy.infra import stack as stack_flows

    stack_flows.update(stack_for(profile, region), confirmer(yes), plan_only)


@quetzal_task(help={"yes": YES_HELP, "email": "user_email metadata of the uploaded base scenario",
                    **AWS_HELP})
def deploy(c, yes=False, email=None, profile=None, region=None):
    """First deployment in one command: stack, image, function, pipeline, base scenario."""
    from quetzal_deploy.infra import stack as stack_flows

    stack_flows.deploy(stack_for(profile, region), confirmer(yes), email)


@quetzal_task(help={"confirm_name": "the model's name, typed in advance (for scripts)", **AWS_HELP})
def destroy(c, confirm_name=None, profile=None, region=None):
    """Delete the model's AWS stack and all its data (bucket, images), after typing its name."""
    from quetzal_deploy.infra import stack as stack_flows

    stack = stack_for(profile, region)
    name = stack.settings.model_name
    typed = confirm_name
    if typed is None:
        print(f"This deletes {name}'s bucket with every scenario, its images, function, pipeline "
              "and roles. It cannot be undone.")
        typed = ask(f"Type the model name ({name}) to confirm: ",
                    "pass --confirm-name <model> to run without asking.")
    if typed != name:
        raise Exit(f"ERROR: {typed!r} is not {name!r}: nothing was deleted.", code=1)
    stack_flows.destroy(stack)
