"""The three push kinds, one name each: `updates`, `by_email`, `creates`.

The name is the module (push/<name>.py), push_log.kind and push_plan.kind, the job
(`push_<name>_job`), its ops (`load_<name>`, `apply_<name>`, `summarise_<name>`), the dbt outbound
model (`reverse_etl.chartmogul_<name>`) and the asset standing for what it pushed
(`chartmogul_pushed_<name>`, with its check `rows_rejected_or_failed`: assets.py).
"""

from __future__ import annotations

from cm_pipeline.push import by_email, creates, updates
from cm_pipeline.push.engine import PushKind

UPDATES, BY_EMAIL, CREATES = updates.NAME, by_email.NAME, creates.NAME
KINDS: dict[str, PushKind] = {k.name: k for k in (updates.KIND, by_email.KIND, creates.KIND)}
