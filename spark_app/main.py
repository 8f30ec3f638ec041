"""EMR Serverless entry point of the feature job (``entryPoint``); arguments are the job's ``entryPointArguments``.

Kept thin on purpose: everything else lives in the ``spark_app`` package shipped in the ``--py-files`` zip.
"""

import sys

from spark_app.job import main

if __name__ == "__main__":
    sys.exit(main())
