"""Sensors for `Definitions`."""

from cm_pipeline.ops.push_sensor import reverse_etl_sensor

SENSORS: list = [reverse_etl_sensor]
