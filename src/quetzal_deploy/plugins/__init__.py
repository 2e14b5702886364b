"""Plugin hooks: a model extends the tools without forking them.

Hooks are implemented in the model repo's ``quetzal_plugins.py`` (loaded by path, never put in
``sys.modules``) or in an installed package that declares an entry point in the group
``quetzal_deploy``. ``spec`` declares them (what a plugin writes against), ``manager`` loads the
plugins and calls them:

- ``quetzal_check_scenario``: before ``invoke upload-scenarios`` sends anything; may refuse or warn;
- ``quetzal_image_files``: files or folders to add to the image under ``LAMBDA_TASK_ROOT``;
- ``quetzal_after_local_run``: after ``invoke run --local``, with the run's summary.

Anything a plugin does wrong (raising, calling ``sys.exit()``, answering nonsense, failing to
import) becomes a ``PluginError`` naming the plugin (an installed one by its distribution and entry
point), the hook and the line.
"""

from quetzal_deploy.plugins.manager import (
    PluginError,
    ScenarioRefused,
    after_local_run,
    check_scenarios,
    image_files,
    plugin_manager,
)
from quetzal_deploy.plugins.spec import PROJECT, Refuse, RunSummary, Verdict, Warn, hookimpl, hookspec

__all__ = ["PROJECT", "PluginError", "Refuse", "RunSummary", "ScenarioRefused", "Verdict", "Warn",
           "after_local_run", "check_scenarios", "hookimpl", "hookspec", "image_files", "plugin_manager"]
