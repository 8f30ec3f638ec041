"""One place that creates the Powertools logger, tracer and metrics for every Lambda module.

Service name, namespace and log level come from the POWERTOOLS_* variables set in template.yaml's Globals.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
