"""Scaffolding upgrades: render the installed template with a repo's recorded answers and merge
what changed into the repo through its ``quetzal-template`` branch (see ``invoke upgrade``)."""
