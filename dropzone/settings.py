"""Environment of the Lambda functions, parsed once into one typed object.

Each function asks for the fields it needs with :meth:`Settings.require`; a missing variable fails at import
time with its name, not at the first event. template.yaml sets exactly these variables (a test ties them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


class MissingSetting(RuntimeError):
    """A function started without an environment variable it needs."""


@dataclass(frozen=True)
class Settings:
    data_bucket: str | None = None  # DATA_BUCKET: incoming/, quarantine/, reports/, curated/, features/, ...
    ledger_table: str | None = None  # LEDGER_TABLE
    contracts_prefix: str = "assets/contracts/"  # CONTRACTS_PREFIX: contracts published by the deploy
    emr_application_id: str | None = None  # EMR_APPLICATION_ID
    emr_job_role_arn: str | None = None  # EMR_JOB_ROLE_ARN
    emr_architecture: str = "ARM64"  # EMR_ARCHITECTURE: ARM64 or X86_64, selects the price pair
    emr_max_vcpu: str | None = None  # EMR_MAX_VCPU: the application's maximum capacity, caps Spark sizing
    spark_entry_point: str | None = None  # SPARK_ENTRY_POINT: s3:// URI of spark_app/main.py
    spark_py_files: str | None = None  # SPARK_PY_FILES: s3:// URI of the zip for --py-files
    sagemaker_role_arn: str | None = None  # SAGEMAKER_ROLE_ARN
    training_source_uri: str | None = None  # TRAINING_SOURCE_URI: s3:// URI of the training source tarball
    training_job_prefix: str = "dz"  # TRAINING_JOB_PREFIX: EventBridge rule filters on it
    model_package_group_prefix: str = "dropzone"  # MODEL_PACKAGE_GROUP_PREFIX
    notify_topic_arn: str | None = None  # NOTIFY_TOPIC_ARN
    ingest_queue_url: str | None = None  # INGEST_QUEUE_URL: the reconciler sends skipped files there again
    price_vcpu_hour: str | None = None  # PRICE_VCPU_HOUR (USD), list price for the architecture
    price_gb_hour: str | None = None  # PRICE_GB_HOUR (USD)
    price_storage_gb_hour: str | None = None  # PRICE_STORAGE_GB_HOUR (USD, beyond 20 GB per worker)
    price_training: str | None = None  # PRICE_TRAINING: "ml.m5.large=0.115,...", USD per training instance-hour

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {f.name: env[f.name.upper()] for f in fields(cls) if env.get(f.name.upper())}
        return cls(**values)

    def require(self, *names: str) -> Settings:
        """Fail with the variable names when any of ``names`` is unset; returns self for chaining."""
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise MissingSetting(f"missing environment variable(s): {', '.join(missing)}")
        return self
