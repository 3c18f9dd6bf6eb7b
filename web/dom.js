// Tiny DOM helpers: elements are built with textContent, never innerHTML, so
// prompts and peer data can hold anything.

const SVG_NS = 'http://www.w3.org/2000/svg'

function apply (el, attrs, children) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue
    if (k === 'class') el.setAttribute('class', v)
    else if (k === 'text') el.textContent = v
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v)
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

/** An HTML element: h('td', { class: 'x' }, 'text', child). */
export function h (tag, attrs, ...children) {
  return apply(document.createElement(tag), attrs, children)
}

/** An SVG element. */
export function s (tag, attrs, ...children) {
  return apply(document.createElementNS(SVG_NS, tag), attrs, children)
}

export function $ (selector) {
  return document.querySelector(selector)
}

/** Replaces an element's children. */
export function fill (el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c != null && c !== false))
}
