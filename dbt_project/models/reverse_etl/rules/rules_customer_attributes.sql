{#-
    ============================== EXAMPLE RULE SET: replace with your own ==============================
    Which custom attribute values each customer should carry.

    Contract (read by chartmogul_updates): one row per (customer_uuid, attribute_key).
        attribute_type   String, Integer, Decimal, Timestamp or Boolean (used to create a missing key)
        attribute_value  the desired value as jsonb (to_jsonb(...)); SQL null removes the key
    Attributes no row mentions are left exactly as they are in ChartMogul. Values are compared with the
    warehouse's custom_attributes as jsonb, so emit them in the form ChartMogul returns them
    (numbers as jsonb numbers, timestamps as ISO 8601 strings).
    ======================================================================================================
-#}

with

customers as (

    select * from {{ ref('stg_chartmogul__customers') }}

),

-- Rule: `mrr_band` (String) buckets MRR in currency units, for customers that are or were paying.
mrr_band as (

    select
        customer_uuid,
        'mrr_band'::text as attribute_key,
        'String'::text as attribute_type,
        to_jsonb(
            case
                when mrr_cents <= 0 then 'none'
                when mrr_cents < 10000 then 'under_100'
                when mrr_cents < 100000 then '100_to_999'
                when mrr_cents < 1000000 then '1000_to_9999'
                else '10000_plus'
            end
        ) as attribute_value

    from customers

    where status in ('Active', 'Past Due', 'Cancelled')

)

select customer_uuid, attribute_key, attribute_type, attribute_value from mrr_band
