"""From the trainer Job and its pods back to the resource's status, as pure functions: what
they show (`observe`), the conditions it changes (`conditions`) and the status patch and Events
that record it (`status_plan`)."""
