"""Infrastructure flows: infra, deploy, destroy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Exit

from quetzal_deploy.tasks.common import ask, confirmed, quetzal_task

if TYPE_CHECKING:
    from quetzal_deploy.aws import Aws
    from quetzal_deploy.infra.stack import Stack
    from quetzal_deploy.settings import Settings

YES_HELP = "apply without asking (for scripts)"


def confirmer(yes: bool):
    """The confirmation the flows call before each apply."""
    return (lambda question: True) if yes else confirmed


def stack_for(settings: Settings, aws: Aws) -> Stack:
    from quetzal_deploy.infra import stack as stack_flows

    return stack_flows.Stack(settings, aws)


# No short flags: -p would be --plan-only here but --profile in every other task.
@quetzal_task(aws=True, auto_shortflags=False,
              help={"plan_only": "show what would change and apply nothing", "yes": YES_HELP,
                    "adopt": "take over the stack the backend's Terraform deployed (after `quetzal-deploy "
                             "adopt`): import it, refuse any plan replacing data, then detach it from "
                             "the old workspace's state",
                    "old_state": "with --adopt: the old configuration's S3 state, s3://<bucket>/<key> "
                                 "(default s3://quetzal-tf-state/terraform/remote-state/terraform.tfstate; "
                                 "the workspace is the model)"})
def infra(settings, aws, plan_only=False, yes=False, adopt=False, old_state=None):
    """Create or update the model's AWS stack with Terraform: plan, confirm, apply."""
    if adopt:
        from quetzal_deploy.adopt import stack as adoption

        bucket, key = adoption.old_state_location(old_state)
        adoption.adopt(stack_for(settings, aws), confirmer(yes), bucket, key, plan_only=plan_only)
        return
    from quetzal_deploy.infra import stack as stack_flows

    stack_flows.update(stack_for(settings, aws), confirmer(yes), plan_only)


@quetzal_task(aws=True, help={"yes": YES_HELP, "email": "user_email metadata of the uploaded base scenario"})
def deploy(settings, aws, yes=False, email=None):
    """First deployment in one command: stack, image, function, pipeline, base scenario."""
    from quetzal_deploy.infra import stack as stack_flows

    stack_flows.deploy(stack_for(settings, aws), confirmer(yes), email)


@quetzal_task(aws=True, help={"confirm_name": "the model's name, typed in advance (for scripts)"})
def destroy(settings, aws, confirm_name=None):
    """Delete the model's AWS stack and all its data (bucket, images), after typing its name."""
    from quetzal_deploy.infra import stack as stack_flows

    stack = stack_for(settings, aws)
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
