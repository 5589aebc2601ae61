"""The mapping layer: a YAML file turns any CRM export into the leadscore contract, without code."""
