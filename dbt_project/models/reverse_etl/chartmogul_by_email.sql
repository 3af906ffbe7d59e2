{#-
    Outbound: custom attributes to set on every customer with an email
    (POST /v1/customers/attributes/custom). Rules live in rules_email_attributes; this model drops the
    (email, key) pairs that every warehouse customer with that email already holds with that value.
    Emails with no customer in the warehouse are kept, so the push reports them rather than losing them.

    Values are compared by the rule's type, as ChartMogul stores them: Integer and Decimal as numbers
    ("1.50" = 1.5), Timestamp as instants ("2024-01-01" = "2024-01-01T00:00:00.000Z"; no zone means UTC),
    Boolean in the documented forms (TRUE, true, t, 1 / FALSE, false, f, 0, and JSON booleans), String
    and anything else as exact text. Every cast is guarded by a pattern check first (inside CASE, whose
    branches Postgres evaluates in order), so a value that does not parse compares as "different" and
    is left to the push, which rejects it with a reason; it never breaks the build.
-#}

{#- Expression templates: @v@ stands for the text to read (local macros do not compile in unit tests). -#}
{%- set as_number -%}
    case
        when @v@ ~ '^[+-]?([0-9]{1,100}(\.[0-9]{0,100})?|\.[0-9]{1,100})([eE][+-]?[0-9]{1,3})?$'
            then (@v@)::numeric
    end
{%- endset -%}

{%- set as_boolean -%}
    case
        when @v@ in ('TRUE', 'true', 't', '1') then true
        when @v@ in ('FALSE', 'false', 'f', '0') then false
    end
{%- endset -%}

{%- set as_instant -%}
    case
        when not (@v@ ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?([Zz]|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)?)?$')
            then null
        when substr(@v@, 1, 4) = '0000' then null
        -- the day must exist in its month (2024-02-30 would not cast)
        when substr(@v@, 9, 2)::int > case
                when substr(@v@, 6, 2) in ('04', '06', '09', '11') then 30
                when substr(@v@, 6, 2) <> '02' then 31
                when substr(@v@, 1, 4)::int % 4 = 0
                    and (substr(@v@, 1, 4)::int % 100 <> 0 or substr(@v@, 1, 4)::int % 400 = 0)
                    then 29
                else 28
            end
            then null
        when length(@v@) = 10 then (@v@ || 'T00:00:00Z')::timestamptz
        when @v@ ~ '([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$' then (@v@)::timestamptz
        else (@v@ || 'Z')::timestamptz
    end
{%- endset -%}

with

desired as (

    select * from {{ ref('rules_email_attributes') }}

),

customers as (

    select email_normalized, custom_attributes
    from {{ ref('stg_chartmogul__customers') }}
    where email_normalized is not null

),

-- Each rule against each warehouse customer with its email; the current value as text when it is a
-- JSON scalar (null when the key is absent, JSON null, an object or an array).
pairs as (

    select
        desired.email,
        desired.key,
        desired.type,
        desired.value,
        trim(desired.value) as wanted,
        case
            when jsonb_typeof(customers.custom_attributes -> desired.key) in ('string', 'number', 'boolean')
                then customers.custom_attributes ->> desired.key
        end as current_text

    from desired

    inner join customers
        on customers.email_normalized = lower(desired.email)

),

compared as (

    select
        email,
        key,
        type,
        value,
        wanted,
        current_text,
        trim(current_text) as current_trimmed

    from pairs

),

matched as (

    select
        email,
        key,
        case
            when value is null then current_text is null
            when current_text is null then false
            when type in ('Integer', 'Decimal')
                then coalesce({{ as_number | replace('@v@', 'wanted') }} = {{ as_number | replace('@v@', 'current_trimmed') }}, false)
            when type = 'Timestamp'
                then coalesce({{ as_instant | replace('@v@', 'wanted') }} = {{ as_instant | replace('@v@', 'current_trimmed') }}, false)
            when type = 'Boolean'
                then coalesce({{ as_boolean | replace('@v@', 'wanted') }} = {{ as_boolean | replace('@v@', 'current_trimmed') }}, false)
            else current_text = value
        end as holds_value

    from compared

),

already_applied as (

    select email, key
    from matched
    group by email, key
    having bool_and(holds_value)

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
