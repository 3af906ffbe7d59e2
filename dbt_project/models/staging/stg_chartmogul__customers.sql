-- One row per live ChartMogul customer: renamed, typed, and without customers deleted from ChartMogul.

with

source as (

    select * from {{ source('chartmogul', 'customers') }}

),

renamed as (

    select

        ----------  ids
        uuid as customer_uuid,
        id as customer_id,
        external_id,
        data_source_uuid,
        coalesce(external_ids, '[]'::jsonb) as external_ids,
        coalesce(data_source_uuids, '[]'::jsonb) as data_source_uuids,

        ---------- text
        name as customer_name,
        email,
        lower(email) as email_normalized,
        company,
        status,
        country,
        state,
        city,
        zip,
        owner,
        website_url,
        billing_system_type,
        billing_system_url,
        chartmogul_url,
        currency,
        currency_sign,

        ---------- numerics (cents of the account currency)
        coalesce(mrr, 0)::bigint as mrr_cents,
        coalesce(arr, 0)::bigint as arr_cents,

        ---------- attributes
        case when jsonb_typeof(tags) = 'array' then tags else '[]'::jsonb end as tags,
        case when jsonb_typeof(custom_attributes) = 'object' then custom_attributes else '{}'::jsonb end
            as custom_attributes,
        coalesce(address, '{}'::jsonb) as address,

        ---------- timestamps
        customer_since,
        lead_created_at,
        free_trial_started_at,
        first_seen_at,
        synced_at

    from source

    where deleted_at is null

)

select * from renamed
