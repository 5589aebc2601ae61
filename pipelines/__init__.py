"""Pipelines: the steps that wire features and models, the synthetic CRM and the CLI."""
