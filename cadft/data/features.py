"""Baseline features (instance 0) from an extract, declared in config (`data.features`).

Each feature is one of three kinds, so a user adds a feature in YAML alone:
- `field`: the value of one single-valued field; numbers stay numbers, categorical codes are decoded to
  their Showcase labels (`Current`, `Prefer not to answer`).
- `mean`: the mean of a field's array readings (SBP 4080 a0/a1), falling back to the next field in
  `fields` when the first has none (manual readings 93).
- `flag`: `Yes` when any of `codes` appears in the multi-select `fields` (or in the field `by_sex` picks:
  6153 for women, 6177 for men), `No` when the participant answered without one of them (e.g. -7 None of
  the above), the special answer's label when that is all they gave, and missing when they gave nothing
  (or `No`, with `absent: "no"`, for fields such as 20002 that are blank when there is nothing to report).

In a number field that cannot be negative (all but `signed` ones in the registry), a negative value is a
UK Biobank special code, not a measurement: the number becomes missing and the answer's label
(`Do not know`, `Prefer not to answer`) goes to the column `<name>:special`, which the text templates read.

The outcome's own fields (hospital codes, deaths, and the task's self-report codes) are refused as
features: a feature that reads them would leak the label. A feature marked `treatment: true` (lipid-lowering,
blood-pressure/antianginal medication) is refused for a prevalent outcome unless `data.allow_treatment_features`
is true: people with CAD at baseline are treated for it, so the treatment is a proxy of the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cadft.data.task import Definition
from cadft.data.ukb.read import Extract
from cadft.data.ukb.registry import get_field
from cadft.errors import CadftError

KINDS = ("field", "mean", "flag")
SPEC_KEYS = {"kind", "field", "fields", "by_sex", "codes", "absent", "title", "units", "decimals", "treatment"}
SEX_FIELD = 31
# Special answers: do not know / prefer not to answer, also the family-history group variants.
SPECIAL_CODES = {
    -1: "Do not know",
    -3: "Prefer not to answer",
    -11: "Do not know",
    -13: "Prefer not to answer",
    -21: "Do not know",
    -23: "Prefer not to answer",
}
SPECIAL_SUFFIX = ":special"  # numeric feature `x` -> column `x:special`: the special answer given instead of a number
SPECIAL_LABELS = frozenset(SPECIAL_CODES.values()) | frozenset(
    {
        "Do not know (group 1)",
        "Prefer not to answer (group 1)",
        "Do not know (group 2)",
        "Prefer not to answer (group 2)",
    }
)


class FeatureConfigError(CadftError):
    pass


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    fields: tuple[int, ...]
    title: str
    units: str
    decimals: int
    codes: tuple[int, ...] = ()
    by_sex: tuple[tuple[int, int], ...] = ()  # (sex code, field)
    absent: str = "missing"
    treatment: bool = False  # a treatment of the disease: a proxy of a prevalent label

    @property
    def numeric(self) -> bool:
        return self.kind == "mean" or (
            self.kind == "field" and get_field(self.fields[0]).type in ("continuous", "integer")
        )

    def source_fields(self) -> list[int]:
        return list(self.fields) + [f for _, f in self.by_sex] + ([SEX_FIELD] if self.by_sex else [])

    def fallback_fields(self) -> list[int]:
        """A mean's later fields are fallbacks: an extract without them still has the feature."""
        return list(self.fields[1:]) if self.kind == "mean" else []


def parse_features(spec) -> list[Feature]:
    """`data.features` (name -> {kind, field(s), ...}) as validated Feature objects, in config order."""
    if not spec:
        raise FeatureConfigError("data.features is empty: list at least one feature")
    return [_parse_one(str(name), item) for name, item in spec.items()]


def _parse_one(name: str, item) -> Feature:
    unknown = set(item) - SPEC_KEYS
    if unknown:  # also catches an unquoted comma in a YAML flow mapping, which splits a title into a key
        raise FeatureConfigError(
            f"data.features.{name} has unknown key(s) {sorted(map(str, unknown))}; allowed: "
            f"{', '.join(sorted(SPEC_KEYS))}"
        )
    kind = item.get("kind", "field")
    if kind not in KINDS:
        raise FeatureConfigError(f"data.features.{name}.kind={kind!r}; allowed: {', '.join(KINDS)}")
    fields = tuple(int(f) for f in (item.get("fields") or ([item["field"]] if item.get("field") is not None else [])))
    by_sex = tuple(sorted((_sex_code(name, sex), int(f)) for sex, f in (item.get("by_sex") or {}).items()))
    if not fields and not by_sex:
        raise FeatureConfigError(f"data.features.{name}: give `field`, `fields` or (flags) `by_sex`")
    for f in fields + tuple(f for _, f in by_sex):
        get_field(f)
    first = get_field(fields[0] if fields else by_sex[0][1])
    if kind == "field" and (len(fields) != 1 or first.is_list):
        raise FeatureConfigError(
            f"data.features.{name}: kind `field` takes one single-valued field; field {first.id} is "
            f"{'an array/multi-select field (use kind flag or mean)' if first.is_list else 'one of several'}"
        )
    if kind == "flag" and not item.get("codes"):
        raise FeatureConfigError(f"data.features.{name}: a flag needs `codes` (the answers that mean Yes)")
    treatment = item.get("treatment", False)
    if not isinstance(treatment, bool):
        raise FeatureConfigError(f"data.features.{name}.treatment={treatment!r}; allowed: true, false")
    absent = str(item.get("absent", "missing"))
    if absent not in ("missing", "no"):
        raise FeatureConfigError(f"data.features.{name}.absent={absent!r}; allowed: missing, no")
    return Feature(
        name=name,
        kind=kind,
        fields=fields,
        title=str(item.get("title") or first.title),
        units=str(item.get("units", first.units) or ""),
        decimals=int(item.get("decimals", 0 if first.type == "integer" else 1)),
        codes=tuple(int(c) for c in item.get("codes") or ()),
        by_sex=by_sex,
        absent=absent,
        treatment=treatment,
    )


def _sex_code(name: str, sex) -> int:
    by_label = {label: code for code, label in get_field(SEX_FIELD).labels.items()}
    if str(sex) not in by_label:
        raise FeatureConfigError(f"data.features.{name}.by_sex: key {sex!r}; allowed: {', '.join(by_label)}")
    return by_label[str(sex)]


def required_fields(features: list[Feature]) -> list[int]:
    fields = [f for feature in features for f in feature.source_fields() if f not in feature.fallback_fields()]
    return list(dict.fromkeys(fields))


def fallback_fields(features: list[Feature]) -> list[int]:
    return list(dict.fromkeys(f for feature in features for f in feature.fallback_fields()))


def check_no_leakage(features: list[Feature], definition: Definition) -> None:
    """Refuse features built from the fields or self-report codes that define the outcome."""
    outcome_fields = definition.outcome_fields()
    for feature in features:
        leaked = outcome_fields & set(feature.source_fields())
        if leaked:
            raise FeatureConfigError(
                f"data.features.{feature.name} reads field(s) {sorted(leaked)}, which define the outcome of task "
                f"{definition.name}: the label would leak into the text. Remove the feature."
            )
        for field in feature.source_fields():
            overlap = set(definition.self_report.get(field, ())) & set(feature.codes or ())
            if overlap or (feature.kind != "flag" and field in definition.self_report):
                raise FeatureConfigError(
                    f"data.features.{feature.name} reads codes {sorted(overlap) or 'all'} of field {field}, "
                    "which the task "
                    f"{definition.name} uses to define its outcome; the label would leak. Use other codes of "
                    "that field."
                )


def check_no_treatment_proxies(features: list[Feature], definition: Definition, allowed: bool) -> None:
    """Refuse treatment features (`treatment: true`) for a prevalent outcome unless data.allow_treatment_features."""
    treatments = [f.name for f in features if f.treatment]
    if definition.outcome == "prevalent" and treatments and not allowed:
        raise FeatureConfigError(
            f"data.features {', '.join(treatments)} are treatments (treatment: true), proxies of the "
            "prevalent outcome of task "
            f"{definition.name} (people with the disease are treated for it): remove them "
            f"({' '.join('~data.features.' + name for name in treatments)}) or set data.allow_treatment_features=true"
        )


def build_features(extract: Extract, features: list[Feature]) -> pl.DataFrame:
    """eid plus one column per feature: Float64 for numbers, String labels for everything else; a numeric
    feature also gets `<name>:special`, the special answer's label where one was given instead of a number."""
    table = extract.scalars.select("eid")
    for feature in features:
        column = {"field": _field_value, "mean": _mean_value, "flag": _flag_value}[feature.kind](extract, feature)
        names = {"v": feature.name, "special": feature.name + SPECIAL_SUFFIX}
        table = table.join(column.rename({k: v for k, v in names.items() if k in column.columns}), on="eid", how="left")
    return table


def _number_or_special(value: pl.Expr, signed: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(number, special answer label) of a numeric value: a negative value where the field cannot be negative is
    a special code (-1 Do not know, -3 Prefer not to answer), never a number; one without a label is missing."""
    special = ~signed & (value < 0)
    codes = {float(code): label for code, label in SPECIAL_CODES.items()}
    label = value.replace_strict(codes, default=None, return_dtype=pl.String)
    return pl.when(special).then(None).otherwise(value), pl.when(special).then(label).otherwise(None)


def _field_value(extract: Extract, feature: Feature) -> pl.DataFrame:
    f = get_field(feature.fields[0])
    value = pl.col(f"f{f.id}")
    if f.type in ("continuous", "integer"):
        number, special = _number_or_special(value, pl.lit(f.signed))
        return extract.scalars.select("eid", number.alias("v"), special.alias("special"))
    if f.type == "categorical":
        labels = SPECIAL_CODES | f.labels  # a special code the field's coding does not list is still no number
        decoded = value.replace_strict(labels, default=value.cast(pl.String), return_dtype=pl.String)
        return extract.scalars.select("eid", decoded.alias("v"))
    return extract.scalars.select("eid", value.cast(pl.String).alias("v"))


def _mean_value(extract: Extract, feature: Feature) -> pl.DataFrame:
    """The mean of the first field (in `fields` order) with a number; the special answer when none has one."""
    signed = [f for f in feature.fields if get_field(f).signed]
    number, special = _number_or_special(pl.col("value"), pl.col("field").is_in(signed))
    order = pl.col("field").replace_strict({f: i for i, f in enumerate(feature.fields)}, return_dtype=pl.Int32)
    per_person = (
        extract.entries.filter(pl.col("field").is_in(feature.fields) & pl.col("value").is_not_null())
        .group_by("eid", "field")
        .agg(number.mean().alias("v"), special.drop_nulls().first().alias("special"))
        .sort(order)
        .group_by("eid")
        .agg(pl.col("v").drop_nulls().first(), pl.col("special").drop_nulls().first())
    )
    return (
        extract.scalars.select("eid")
        .join(per_person, on="eid", how="left")
        .select("eid", "v", pl.when(pl.col("v").is_null()).then(pl.col("special")).alias("special"))
        .with_columns(pl.col("v").cast(pl.Float64), pl.col("special").cast(pl.String))
    )


def _flag_value(extract: Extract, feature: Feature) -> pl.DataFrame:
    answers = extract.entries.filter(pl.col("field").is_in(feature.source_fields()))
    if feature.by_sex:
        chosen = pl.DataFrame(list(feature.by_sex), schema={"sex": pl.Int64, "field": pl.Int32}, orient="row")
        sex = extract.scalars.select("eid", pl.col(f"f{SEX_FIELD}").alias("sex"))
        answers = answers.join(sex, on="eid").join(chosen, on=["sex", "field"], how="semi")
    special = pl.col("num").is_in(list(SPECIAL_CODES))
    per_person = answers.group_by("eid").agg(
        pl.col("num").is_in(list(feature.codes)).any().alias("yes"),
        (~special).any().alias("answered"),
        pl.col("num").filter(special).first().alias("special"),
    )
    value = (
        pl.when(pl.col("yes"))
        .then(pl.lit("Yes"))
        .when(pl.col("answered"))
        .then(pl.lit("No"))
        .when(pl.col("special").is_not_null())
        .then(pl.col("special").replace_strict(SPECIAL_CODES, default=None, return_dtype=pl.String))
        .otherwise(pl.lit("No" if feature.absent == "no" else None, pl.String))
    )
    return extract.scalars.select("eid").join(per_person, on="eid", how="left").select("eid", value.alias("v"))
