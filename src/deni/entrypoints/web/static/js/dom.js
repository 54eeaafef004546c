// Building the page from data without ever parsing data as HTML: text is always a text node.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function field(label, name, attributes = {}) {
  const id = `field-${name}`;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name, autocomplete: "off", ...attributes }),
  );
}

export function pinField(label, name = "pin") {
  return field(label, name, {
    type: "password",
    inputmode: "numeric",
    pattern: "\\d{4}",
    maxlength: "4",
    minlength: "4",
    required: true,
    autocomplete: "off",
  });
}

// A form whose submit runs `action(values)`; what it throws is shown in the form, not lost: a
// Refused naming a field right under that field (which is marked invalid and says why to a
// screen reader), anything else above the button.
export function form(children, submitLabel, action) {
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const button = h("button", { type: "submit" }, submitLabel);
  const element = h("form", { novalidate: true }, children, problem, button);
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    for (const old of element.querySelectorAll(".field-problem")) old.remove();
    for (const input of element.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
    button.disabled = true;
    element.dataset.busy = "true"; // until the action is done: the app is not settled yet
    try {
      await action(Object.fromEntries(new FormData(element)));
    } catch (error) {
      const input = error.field ? element.querySelector(`[name="${error.field}"]`) : null;
      if (input) {
        const said = h(
          "p",
          { class: "problem field-problem", id: `${input.id}-problem`, role: "alert" },
          error.message,
        );
        input.after(said);
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", said.id);
        input.focus();
      } else {
        problem.textContent = error.message;
        problem.hidden = false;
      }
    } finally {
      button.disabled = false;
      delete element.dataset.busy;
    }
  });
  return element;
}

// What a person is told, in their language; `field` names the input it is about, if any.
export class Refused extends Error {
  constructor(message, field = null) {
    super(message);
    this.field = field;
  }
}
