{#-
    Outbound: custom attributes to set on every customer with an email
    (POST /v1/customers/attributes/custom). Rules live in rules_email_attributes; this model drops the
    (email, key) pairs that every warehouse customer with that email already holds with that value.
    Emails with no customer in the warehouse are kept, so the push reports them rather than losing them.
-#}

with

desired as (

    select * from {{ ref('rules_email_attributes') }}

),

customers as (

    select email_normalized, custom_attributes
    from {{ ref('stg_chartmogul__customers') }}
    where email_normalized is not null

),

already_applied as (

    select
        desired.email,
        desired.key

    from desired

    inner join customers
        on customers.email_normalized = lower(desired.email)

    group by desired.email, desired.key

    having bool_and((customers.custom_attributes ->> desired.key) is not distinct from desired.value)

),

final as (

    select
        desired.email,
        desired.key,
        desired.type,
        desired.value,
        desired.source

    from desired

    where not exists (
        select 1
        from already_applied
        where already_applied.email = desired.email
            and already_applied.key = desired.key
    )

)

select * from final
order by email, key
