{#-
    Outbound: customers/leads to create (POST /v1/customers), one row per create body.
    EXAMPLE source: the new_leads seed; replace `leads` with your CRM or product table.
    Leads whose (data_source_uuid, external_id) already exists in the warehouse are left out; the push
    also resolves duplicates against the API, so a create is never made twice.
-#}

{%- set configured_data_source = var('new_leads_data_source_uuid') -%}

with

leads as (

    select * from {{ ref('new_leads') }}

),

customers as (

    select data_source_uuid, external_id, billing_system_type
    from {{ ref('stg_chartmogul__customers') }}

),

-- The API creates customers only in Custom data sources (billing system type 'Custom'), so only those
-- can be the default.
custom_data_sources as (

    select data_source_uuid, count(*) as customer_count
    from customers
    where billing_system_type = 'Custom'
        and data_source_uuid is not null
    group by data_source_uuid

),

-- Blank data_source_uuid in the seed: var('new_leads_data_source_uuid'), else the Custom data source
-- holding the most customers in the warehouse (ties: the smallest uuid). With neither it stays null:
-- the model's not_null test on data_source_uuid fails, and the push rejects those rows by name.
default_data_source as (

    select coalesce(
        {% if configured_data_source %}'{{ configured_data_source | replace("'", "''") }}'{% else %}null{% endif %}::text,
        (
            select data_source_uuid
            from custom_data_sources
            order by customer_count desc, data_source_uuid
            limit 1
        )
    ) as data_source_uuid

),

prepared as (

    select
        coalesce(nullif(trim(leads.data_source_uuid), ''), default_data_source.data_source_uuid)
            as data_source_uuid,
        trim(leads.external_id) as external_id,
        leads.name,
        leads.email,
        leads.company,
        leads.country,
        leads.state,
        leads.city,
        leads.zip,
        leads.lead_created_at,
        leads.free_trial_started_at,
        leads.owner,
        leads.website_url,

        case
            when coalesce(
                leads.contact_first_name, leads.contact_last_name, leads.contact_email,
                leads.contact_title, leads.contact_phone
            ) is null then null
            else jsonb_strip_nulls(jsonb_build_object(
                'first_name', leads.contact_first_name,
                'last_name', leads.contact_last_name,
                'email', leads.contact_email,
                'title', leads.contact_title,
                'phone', leads.contact_phone
            ))
        end as primary_contact,

        coalesce(
            (
                select jsonb_agg(trim(parts.tag) order by parts.position)
                from unnest(string_to_array(leads.tags, ';')) with ordinality as parts (tag, position)
                where trim(parts.tag) <> ''
            ),
            '[]'::jsonb
        ) as tags,

        case
            when nullif(trim(leads.lead_source), '') is null then '[]'::jsonb
            else jsonb_build_array(jsonb_build_object(
                'type', 'String',
                'key', 'lead_source',
                'value', trim(leads.lead_source),
                'source', 'dbt'
            ))
        end as custom

    from leads

    cross join default_data_source

    where nullif(trim(leads.external_id), '') is not null

),

final as (

    select * from prepared

    where not exists (
        select 1
        from customers
        where customers.data_source_uuid = prepared.data_source_uuid
            and customers.external_id = prepared.external_id
    )

)

select * from final
order by data_source_uuid, external_id
