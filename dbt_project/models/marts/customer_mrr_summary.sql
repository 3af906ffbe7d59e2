-- Customer counts and MRR by status, country, billing system and currency (one row per combination).

with

customers as (

    select * from {{ ref('dim_customers') }}

),

summary as (

    select
        status,
        coalesce(country, 'unknown') as country,
        coalesce(billing_system_type, 'unknown') as billing_system_type,
        coalesce(currency, 'unknown') as currency,
        count(*) as customer_count,
        count(*) filter (where mrr_cents > 0) as paying_customer_count,
        sum(mrr_cents)::bigint as total_mrr_cents,
        sum(arr_cents)::bigint as total_arr_cents,
        round(avg(mrr_cents)::numeric, 2) as avg_mrr_cents,
        max(mrr_cents) as max_mrr_cents

    from customers

    group by 1, 2, 3, 4

)

select * from summary
