"""Campaign engine: attack library, evaluators, runner, scoring and story building."""
