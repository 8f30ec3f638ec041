"""The embedded local runtime: the whole pipeline of template.yaml in one process, no AWS account, no Docker.

``server`` starts moto's AWS API on 127.0.0.1, ``stack`` deploys the SAM template into it, ``functions`` delivers
queues to handlers in-process like Lambda's event source mappings, ``emr`` and ``training`` execute EMR Serverless
job runs and SageMaker training jobs locally, ``runtime`` drives them until the pipeline is idle.
"""
