{#-
    A custom schema is used as written: `+schema: reverse_etl` builds in `reverse_etl`, not
    `<target schema>_reverse_etl`, because the push ops read fixed names. Models without a custom
    schema build in the target schema (CM_DBT_SCHEMA, default `analytics`).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
