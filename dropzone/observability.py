"""One place that creates the Powertools logger, tracer and metrics for every Lambda module.

Service name, namespace and log level come from the POWERTOOLS_* variables set in template.yaml's Globals.

Cold-start cost of the Tracer (measured by benchmarks/bundles.py): ``Tracer()`` imports the X-Ray SDK even when
tracing is disabled, and the SDK decides at import where it runs. In Lambda (LAMBDA_TASK_ROOT set) it uses its
local sampler and patches botocore: ~15 ms. Outside Lambda (tests, the local runtime) it builds the centralised
sampler, which creates a botocore session and an X-Ray client of its own: ~100-150 ms per process, which no Lambda
pays. So import timings are only meaningful in the environment the Lambda runtime sets.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
