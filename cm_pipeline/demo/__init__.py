"""The demo: a sandbox ChartMogul API, the embedded Postgres warehouse and the Dagster UI, started and
stopped in order. Run it with `make demo` (or `python -m cm_pipeline.demo`); nothing here runs in
production.

  ports.py     UI_PORT / SANDBOX_PORT, and refusing a busy port before anything starts
  instance.py  the demo's DAGSTER_HOME/dagster.yaml (the deployed queue, pool and run-monitoring settings)
  warehouse.py the embedded Postgres it leaves running, `make psql` and `make stop`
  console.py   the quiet console and the full log file
  ui.py        the webserver's GraphQL API: launch, start the sensor, list and terminate runs
  runs.py      one console line per run start and end, with its outcome and counts
  dagster.py   `dg dev` in a process group of its own
  session.py   the order things start and stop in
"""
