"""`python -m cm_pipeline.demo`: see cm_pipeline/demo/session.py."""

from cm_pipeline.demo.session import main

raise SystemExit(main())
