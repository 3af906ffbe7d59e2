"""Reverse-ETL ops that push warehouse-computed changes to ChartMogul."""
