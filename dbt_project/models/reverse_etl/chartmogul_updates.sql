{#-
    Outbound: tag and custom attribute changes for push_updates_job (PATCH /v1/customers/{uuid}).
    The rules live in models/reverse_etl/rules/; this model only diffs them against the warehouse and
    emits a row for a customer when at least one tag or attribute would change. The push merges each
    row onto the customer's whole current state, so nothing the row does not mention is lost.
-#}

with

customers as (

    select customer_uuid, tags, custom_attributes
    from {{ ref('stg_chartmogul__customers') }}

),

desired_tags as (

    select * from {{ ref('rules_customer_tags') }}

),

desired_attributes as (

    select * from {{ ref('rules_customer_attributes') }}

),

-- A tag changes when it is wanted and missing, or unwanted and present.
tag_changes as (

    select
        desired_tags.customer_uuid,
        desired_tags.tag,
        desired_tags.wanted

    from desired_tags

    inner join customers
        on customers.customer_uuid = desired_tags.customer_uuid

    where desired_tags.wanted <> (customers.tags @> jsonb_build_array(desired_tags.tag))

),

-- An attribute changes when the desired jsonb value differs from the current one. A SQL-null (or
-- JSON-null) desired value is a removal, needed only when the key holds a value: a key that is absent
-- or holds JSON null counts as removed already, so it does not emit a row on every build.
attribute_changes as (

    select
        desired_attributes.customer_uuid,
        desired_attributes.attribute_key,
        desired_attributes.attribute_type,
        desired_attributes.attribute_value

    from desired_attributes

    inner join customers
        on customers.customer_uuid = desired_attributes.customer_uuid

    where case
        when coalesce(jsonb_typeof(desired_attributes.attribute_value), 'null') = 'null'
            then coalesce(jsonb_typeof(customers.custom_attributes -> desired_attributes.attribute_key), 'null')
                <> 'null'
        else desired_attributes.attribute_value
            is distinct from (customers.custom_attributes -> desired_attributes.attribute_key)
    end

),

tag_updates as (

    select
        customer_uuid,
        coalesce(jsonb_agg(tag order by tag) filter (where wanted), '[]'::jsonb) as add_tags,
        coalesce(jsonb_agg(tag order by tag) filter (where not wanted), '[]'::jsonb) as remove_tags

    from tag_changes

    group by customer_uuid

),

attribute_updates as (

    select
        customer_uuid,
        jsonb_object_agg(attribute_key, attribute_value) as custom_attributes,
        coalesce(
            jsonb_object_agg(attribute_key, attribute_type) filter (where attribute_type is not null),
            '{}'::jsonb
        ) as attribute_types

    from attribute_changes

    group by customer_uuid

),

final as (

    select
        coalesce(tag_updates.customer_uuid, attribute_updates.customer_uuid) as customer_uuid,
        coalesce(tag_updates.add_tags, '[]'::jsonb) as add_tags,
        coalesce(tag_updates.remove_tags, '[]'::jsonb) as remove_tags,
        coalesce(attribute_updates.custom_attributes, '{}'::jsonb) as custom_attributes,
        coalesce(attribute_updates.attribute_types, '{}'::jsonb) as attribute_types

    from tag_updates

    full outer join attribute_updates
        on attribute_updates.customer_uuid = tag_updates.customer_uuid

)

select * from final
order by customer_uuid
