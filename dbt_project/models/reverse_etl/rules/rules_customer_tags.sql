{#-
    ============================== EXAMPLE RULE SET: replace with your own ==============================
    Which tags each customer should, or should not, carry.

    Contract (read by chartmogul_updates): one row per (customer_uuid, tag) a rule has an
    opinion about.
        wanted = true   the tag is added when the customer lacks it
        wanted = false  the tag is removed when the customer has it
    Tags no row mentions are left exactly as they are in ChartMogul. Add a rule by adding a CTE and a
    `union all` branch below.
    ======================================================================================================
-#}

with

customers as (

    select * from {{ ref('stg_chartmogul__customers') }}

),

-- Rule: `high-value` while MRR is at least var('high_value_mrr_cents'); removed when MRR drops below it.
high_value as (

    select
        customer_uuid,
        'high-value'::text as tag,
        mrr_cents >= {{ var('high_value_mrr_cents') | int }} as wanted

    from customers

)

select customer_uuid, tag, wanted from high_value
