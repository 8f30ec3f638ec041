"""The dropzone feature job for EMR Serverless (entry point: spark_app/main.py)."""
