// The order rules, as the server states them: the JSON schemas of OrderIn and ModifyIn in
// /api/v1/openapi.json (types, ranges, patterns, required fields) and the tables the server
// validates with (x-needs, x-price-ticks, x-side-rules, x-whole-quantity...). Nothing here
// repeats a limit; without the document the server's own answer (a 400 naming the field at
// preview) is the check.
import {api} from "./api.js";
import {isNum, nf} from "./format.js";

let schemas = null; // {OrderIn, ModifyIn} once loaded
let loading = null;

export function loadRules() {
  if (!loading) {
    loading = api("/api/v1/openapi.json").then((doc) => {
      const all = (doc && doc.components && doc.components.schemas) || {};
      schemas = {OrderIn: all.OrderIn || null, ModifyIn: all.ModifyIn || null};
      return schemas;
    }).catch(() => { loading = null; return null; });
  }
  return loading;
}

const orderSchema = () => (schemas && schemas.OrderIn) || null;

/** The server's symbol pattern (before the rules arrive: anything starting with a letter). */
export function symbolPattern() {
  const prop = orderSchema() && (orderSchema().properties || {}).symbol;
  return prop && prop.pattern ? new RegExp(prop.pattern) : /^[A-Za-z]/;
}

/** Which price inputs an order type takes: {limit_price, stop_price, trailing}. */
export function needsOf(orderType) {
  const table = orderSchema() && orderSchema()["x-needs"];
  if (table && table[orderType]) return table[orderType];
  // before the rules arrive: show every price field the type may name
  return {limit_price: /LMT/.test(orderType), stop_price: /STP/.test(orderType), trailing: orderType === "TRAIL"};
}

/** The numeric members of a property's schema (anyOf nests for optional fields). */
function numberSpecs(prop) {
  if (!prop) return [];
  if (prop.type === "integer" || prop.type === "number") return [prop];
  return (prop.anyOf || []).flatMap(numberSpecs);
}

/** A message for `value` against the bounds of `prop`, or null. */
function numberProblem(prop, value) {
  if (!Number.isFinite(value)) return "must be a number";
  const spec = numberSpecs(prop).find((s) => s.type === "number") || numberSpecs(prop)[0];
  if (!spec) return null;
  const fmt = (n) => nf(0, 6).format(n);
  if (isNum(spec.exclusiveMinimum) && value <= spec.exclusiveMinimum) return `must be greater than ${fmt(spec.exclusiveMinimum)}`;
  if (isNum(spec.minimum) && value < spec.minimum) return `must be at least ${fmt(spec.minimum)}`;
  if (isNum(spec.exclusiveMaximum) && value >= spec.exclusiveMaximum) return `must be less than ${fmt(spec.exclusiveMaximum)}`;
  if (isNum(spec.maximum) && value > spec.maximum) return `must be at most ${fmt(spec.maximum)}`;
  return null;
}

/** Minimum price variation (the server's x-price-ticks: first match wins). */
export function priceTick(secType, symbol, price) {
  const ticks = (orderSchema() && orderSchema()["x-price-ticks"]) || [];
  const hit = ticks.find((t) => t.sec_type === secType && (symbol || "").includes(t.symbol_contains)
    && (t.below === null || price < t.below));
  return hit ? hit.tick : null;
}

function checkTicks(errors, body, fields) {
  for (const field of fields) {
    const price = body[field];
    if (errors[field] || !isNum(price)) continue;
    const tick = priceTick(body.sec_type, body.symbol, price);
    if (tick && Math.abs(Math.round(price / tick) * tick - price) > tick * 1e-6) {
      errors[field] = `${price} is not a multiple of the price tick ${tick}`;
    }
  }
}

/** {field: message} for a new order's body (empty when the rules find nothing). */
export function validateOrder(body) {
  const schema = orderSchema();
  const errors = {};
  if (!schema) return errors;
  const props = schema.properties || {};
  for (const field of schema.required || []) {
    if (body[field] === null || body[field] === undefined || body[field] === "") errors[field] = "is required";
  }
  if (!errors.symbol && props.symbol && props.symbol.pattern && !new RegExp(props.symbol.pattern).test(body.symbol)) {
    errors.symbol = props.symbol.description || "is not a valid symbol";
  }
  for (const [field, value] of Object.entries(body)) {
    if (errors[field] || value === null || value === undefined || typeof value === "boolean") continue;
    if (numberSpecs(props[field]).length) {
      const problem = numberProblem(props[field], value);
      if (problem) errors[field] = problem;
    }
  }
  const needs = (schema["x-needs"] || {})[body.order_type];
  if (needs) {
    for (const field of ["limit_price", "stop_price"]) {
      if (needs[field] && (body[field] === null || body[field] === undefined)) errors[field] = `is required for ${body.order_type} orders`;
    }
    if (needs.trailing) {
      const field = "trailing_percent" in body ? "trailing_percent" : "trailing_amount";
      if (body[field] === null || body[field] === undefined) errors[field] = `is required for ${body.order_type} orders`;
    }
  }
  if (!errors.quantity && (schema["x-whole-quantity"] || []).includes(body.sec_type) && !Number.isInteger(body.quantity)) {
    errors.quantity = "must be a whole number of shares for stocks";
  }
  if (isNum(body.take_profit) || isNum(body.stop_loss)) {
    if ((schema["x-bracket-tifs-refused"] || []).includes(body.tif)) errors.tif = `a bracket cannot be ${body.tif}`;
    const mirror = {above: "below", below: "above"};
    for (const rule of schema["x-side-rules"] || []) {
      const price = body[rule.field];
      const than = body[rule.than];
      if (errors[rule.field] || errors[rule.than] || !isNum(price) || !isNum(than)) continue;
      const side = body.action === "BUY" ? rule.buy : mirror[rule.buy];
      if ((price - than) * (side === "above" ? 1 : -1) <= 0) {
        errors[rule.field] = `must be ${side} ${rule.than_words || rule.than} for a ${body.action}`;
      }
    }
  }
  checkTicks(errors, body, schema["x-tick-fields"] || []);
  return errors;
}

/** {field: message} for a change of `order` (quantity and prices; the server checks the rest). */
export function validateChange(order, change) {
  const schema = schemas && schemas.ModifyIn;
  const errors = {};
  if (!schema) return errors;
  for (const [field, value] of Object.entries(change)) {
    const problem = numberProblem((schema.properties || {})[field], value);
    if (problem) errors[field] = problem;
  }
  if (!errors.quantity && "quantity" in change && !Number.isInteger(change.quantity)) errors.quantity = "must be a whole number";
  checkTicks(errors, {...change, sec_type: order.sec_type, symbol: order.symbol},
    ["limit_price", "stop_price"]);
  return errors;
}
