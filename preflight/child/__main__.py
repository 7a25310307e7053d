"""`python -m preflight.child JOB.json`: run one dry-run job (see preflight.child.job)."""
import sys

from preflight.child.job import main

sys.exit(main())
