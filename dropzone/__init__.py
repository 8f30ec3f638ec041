"""dropzone: validate files on landing, compute features with Spark, train and gate models — on AWS or locally."""

__version__ = "0.1.0"
