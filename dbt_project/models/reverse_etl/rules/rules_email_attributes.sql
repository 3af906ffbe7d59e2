{#-
    ============================== EXAMPLE RULE SET: replace with your own ==============================
    Custom attributes to set on every customer with a given email, through
    POST /v1/customers/attributes/custom.

    Contract (read by chartmogul_by_email): one row per (email, key) with
        type    String, Integer, Decimal, Timestamp or Boolean
        value   the value as text (the push validates and coerces it to `type`)
        source  shown in the ChartMogul UI (optional)
    ======================================================================================================
-#}

with

responses as (

    select * from {{ ref('nps_responses') }}

),

-- Rule: `nps_score` (Integer) is the latest NPS answer of each email.
latest_nps as (

    select distinct on (lower(trim(email)))
        trim(email) as email,
        'nps_score'::text as key,
        'Integer'::text as type,
        nps_score::text as value,
        'nps_survey'::text as source

    from responses

    where email is not null and trim(email) <> '' and nps_score is not null

    order by lower(trim(email)), responded_at desc nulls last

)

select email, key, type, value, source from latest_nps
