/**
 * A small, safe markdown renderer for replies: paragraphs, fenced code blocks, inline code,
 * bold, italics, bullet and numbered lists, headings. It builds DOM nodes and sets only
 * `textContent`: no HTML from the text is ever parsed, so a reply cannot inject markup.
 * An unterminated fence (a reply still streaming) renders as a code block to the end.
 */

const FENCE = /^```\s*([A-Za-z0-9_+.-]*)\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const INLINE = /(`[^`\n]+`|\*\*[^*\n]+\*\*|\*[^*\n]+\*)/g;

/** Appends `text` with inline code, bold and italics as elements. */
function inline(parent: HTMLElement, text: string): void {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    const at = match.index ?? 0;
    if (at > last) parent.append(text.slice(last, at));
    const token = match[0];
    const el = document.createElement(token.startsWith('`') ? 'code' : token.startsWith('**') ? 'strong' : 'em');
    el.textContent = token.startsWith('**') ? token.slice(2, -2) : token.slice(1, -1);
    parent.append(el);
    last = at + token.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

/** Renders markdown `text` into a fragment of safe DOM nodes. */
export function renderMarkdown(text: string): DocumentFragment {
  const out = document.createDocumentFragment();
  const lines = text.split('\n');
  let paragraph: string[] = [];
  let list: HTMLElement | null = null;
  const flushParagraph = () => {
    if (paragraph.length === 0) return;
    const p = document.createElement('p');
    inline(p, paragraph.join(' '));
    out.append(p);
    paragraph = [];
  };
  const closeList = () => {
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const fence = FENCE.exec(line);
    if (fence) {
      flushParagraph();
      closeList();
      const code: string[] = [];
      while (++i < lines.length && !FENCE.test(lines[i]!)) code.push(lines[i]!);
      const pre = document.createElement('pre');
      const el = document.createElement('code');
      if (fence[1]) el.dataset.lang = fence[1];
      el.textContent = code.join('\n');
      pre.append(el);
      out.append(pre);
      continue;
    }
    const bullet = BULLET.exec(line);
    const numbered = bullet ? null : NUMBERED.exec(line);
    if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? 'UL' : 'OL';
      if (!list || list.tagName !== tag) {
        list = document.createElement(tag.toLowerCase());
        out.append(list);
      }
      const li = document.createElement('li');
      inline(li, (bullet ?? numbered)![1]!);
      list.append(li);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      flushParagraph();
      closeList();
      const h = document.createElement(`h${Math.min(6, heading[1]!.length + 2)}`);
      inline(h, heading[2]!);
      out.append(h);
      continue;
    }
    if (line.trim() === '') {
      flushParagraph();
      closeList();
      continue;
    }
    closeList();
    paragraph.push(line);
  }
  flushParagraph();
  return out;
}
