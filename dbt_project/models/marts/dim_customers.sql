-- One row per live customer with lifecycle flags and MRR in currency units, for analysts and BI.

with

customers as (

    select * from {{ ref('stg_chartmogul__customers') }}

),

enriched as (

    select
        customer_uuid,
        customer_id,
        external_id,
        data_source_uuid,
        customer_name,
        email,
        email_normalized,
        company,
        status,

        case
            when status in ('New Lead', 'Working Lead', 'Qualified Lead', 'Unqualified Lead') then 'lead'
            when status in ('Active', 'Past Due') then 'customer'
            when status = 'Cancelled' then 'churned'
        end as lifecycle_stage,

        status in ('Active', 'Past Due') as is_paying,

        country,
        state,
        city,
        zip,
        owner,
        website_url,
        billing_system_type,
        currency,
        mrr_cents,
        arr_cents,
        mrr_cents / 100.0 as mrr,
        arr_cents / 100.0 as arr,
        tags,
        jsonb_array_length(tags) as tag_count,
        custom_attributes,
        customer_since,
        lead_created_at,
        free_trial_started_at,
        first_seen_at,
        synced_at

    from customers

)

select * from enriched
