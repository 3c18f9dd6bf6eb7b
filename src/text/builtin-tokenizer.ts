/**
 * The built-in tokenizer: a small, deterministic HuggingFace `tokenizer.json`
 * generated in code, so a model package can carry a text encoder without
 * downloading anything. Tokenization itself is done by
 * `@huggingface/tokenizers`; this module only writes the configuration (the
 * same file also loads in the Rust/Python `tokenizers` library).
 *
 * Design (WordPiece, like BERT's, over a fixed vocabulary):
 * - normalizer: NFKD → strip accents → lowercase ("Café" → "cafe").
 * - pre-tokenizer: split on whitespace, every punctuation character on its
 *   own (BertPreTokenizer), every digit on its own (Digits).
 * - model: WordPiece with `##` continuation pieces. A word in the vocabulary
 *   is one token; any other word of letters a–z falls back to pieces
 *   (greedy longest match: a known word or letter first, then `##` suffix
 *   pieces and `##` letters), so every ASCII prompt tokenizes without
 *   `<unk>`. A word holding a character outside the vocabulary (emoji,
 *   CJK, ...) becomes one `<unk>`.
 * - post-processor: TemplateProcessing "$A </s>" (appends end-of-sequence).
 * - ids: <pad>=0, </s>=1, <unk>=2, then single characters, then `##`
 *   letters, then `##` suffixes, then the words in BUILTIN_WORDS order
 *   (repeats skipped). Changing any list changes the ids: the vocabulary is
 *   part of a model package's format, so only ever append.
 */

/** Special tokens of the built-in tokenizer and their ids. */
export const PAD_TOKEN = '<pad>'
export const EOS_TOKEN = '</s>'
export const UNK_TOKEN = '<unk>'
export const PAD_ID = 0
export const EOS_ID = 1
export const UNK_ID = 2

const LETTERS = 'abcdefghijklmnopqrstuvwxyz'
const DIGITS = '0123456789'
/** Printable ASCII punctuation, each a token of its own. */
const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'

/** Common English suffixes as continuation pieces ("##ing" in "jump ##ing"). */
const SUFFIXES = ['s', 'es', 'ed', 'd', 'ing', 'ly', 'er', 'ers', 'est', 'y', 'ies', 'ness', 'ful', 'less', 'tion', 'ment', 'able', 'al', 'ish', 'en']

/**
 * Common English words, weighted towards what video prompts talk about:
 * subjects, actions, places, weather and light, colours, materials, styles,
 * camera language.
 */
const WORDS = `
the a an and or but of in on at to from with without by for over under into onto through across
along around between behind beside near above below inside outside up down off out away back
is are was were be been being has have had do does did can could will would should may might
it its this that these those there here his her their our my your he she they we you i me him them us
who what which where when why how all some many much more most few other another each every both
no not very so too just only also still then than as if while again ever never always

man woman men women boy girl child children kid kids baby person people family friend friends couple
crowd group team player dancer runner rider chef farmer soldier knight king queen princess prince
astronaut pilot sailor robot alien monster ghost wizard witch dragon angel zombie ninja pirate
cowboy scientist doctor teacher student worker musician singer artist painter photographer

dog dogs puppy cat cats kitten horse horses cow cows pig sheep goat bird birds eagle owl parrot
duck chicken fish shark whale dolphin octopus turtle frog snake lizard bear panda tiger lion
elephant giraffe monkey gorilla fox wolf deer rabbit squirrel mouse bee butterfly spider ant
insect animal animals pet corgi teddy unicorn dinosaur penguin camel zebra koala jellyfish crab

car cars truck bus train plane airplane helicopter rocket spaceship ship boat sailboat bicycle
bike motorcycle skateboard surfboard balloon kite drone tractor taxi subway wheel engine

house home building buildings tower castle palace temple church bridge road street streets
highway city town village market shop store restaurant cafe kitchen room bedroom bathroom office
library school museum station airport park garden farm field fields forest jungle desert mountain
mountains hill hills valley canyon cave river lake sea ocean beach island coast shore waterfall
pond swamp volcano glacier cliff rock rocks stone sand snow ice grass tree trees flower flowers
rose leaf leaves plant plants wood water fire smoke cloud clouds sky sun moon star stars planet
earth space galaxy universe world nature landscape horizon sunset sunrise dawn dusk night day
morning evening afternoon midnight spring summer autumn fall winter weather rain storm thunder
lightning wind fog mist rainbow wave waves tide underwater surface ground floor wall window door
roof stairs table chair bed sofa lamp candle mirror clock book books paper letter picture painting
camera phone computer screen television radio guitar piano violin drum drums music song

food bread cake pizza burger coffee tea wine beer milk fruit apple apples orange banana strawberry
cherry lemon grape grapes vegetable soup pasta rice egg eggs chocolate candy ice cream cookie
cup glass bottle plate bowl spoon fork knife basket box bag ball toy toys hat shirt dress coat
shoes jacket glasses umbrella flag sword shield crown ring necklace mask helmet

red orange yellow green blue purple pink brown black white gray grey gold golden silver colorful
dark light bright pale deep vivid neon pastel rainbow transparent shiny glowing sparkling

big small large tiny huge giant little tall short long wide narrow thin thick round square flat
old young new ancient modern futuristic vintage retro classic beautiful pretty cute ugly happy
sad angry calm quiet loud fast slow quick gentle soft hard heavy strong weak hot cold warm cool
wet dry clean dirty empty full open closed high low far close early late busy lonely peaceful
magical mysterious scary spooky funny serious epic dramatic cinematic realistic surreal abstract
detailed sharp blurry smooth rough wooden metal metallic glass plastic paper stone crystal
fluffy furry soft hairy wild natural urban rural tropical arctic snowy rainy sunny cloudy foggy
stormy windy misty frozen burning floating flying falling rising spinning rotating moving
still silent lush green dense sparse

walk walks walking run runs running jump jumps jumping swim swims swimming fly flies flying
dance dances dancing sing sings singing play plays playing eat eats eating drink drinks drinking
sleep sleeps sleeping sit sits sitting stand stands standing lie lies lying ride rides riding
drive drives driving climb climbs climbing fall falls falling grow grows growing move moves moving
turn turns turning look looks looking watch watches watching see sees seeing read reads reading
write writes writing paint paints painting cook cooks cooking hold holds holding carry carries
carrying throw throws throwing catch catches catching kick kicks kicking push pushes pushing
pull pulls pulling open opens opening close closes closing cut cuts cutting build builds building
break breaks breaking burn burns burning melt melts melting explode explodes exploding shine
shines shining glow glows glowing float floats floating spin spins spinning roll rolls rolling
bounce bounces bouncing shake shakes shaking wave waves waving smile smiles smiling laugh laughs
laughing cry cries crying talk talks talking speak speaks speaking fight fights fighting chase
chases chasing hunt hunts hunting race races racing surf surfs surfing skate skates skating
ski skis skiing dive dives diving hike hikes hiking travel travels traveling explore explores
exploring sail sails sailing land lands landing launch launches launching crash crashes crashing
rise rises rising set sets setting flow flows flowing pour pours pouring splash splashes
splashing blow blows blowing drift drifts drifting hover hovers hovering wander wanders wandering
march marches marching crawl crawls crawling leap leaps leaping gallop gallops galloping
make makes making take takes taking give gives giving get gets getting go goes going come comes
coming leave leaves leaving bring brings bringing show shows showing become becomes becoming
change changes changing transform transforms transforming appear appears appearing disappear
disappears disappearing wear wears wearing paddle sway sways swaying

camera shot shots view close closeup wide angle aerial drone overhead pan panning zoom zooming
tracking dolly tilt slow motion timelapse time lapse frame frames scene scenes clip video footage
film movie animation animated cartoon anime style render rendering photo photograph portrait
sketch drawing illustration watercolor oil pixel art digital concept background foreground
focus bokeh depth lighting light lights shadow shadows reflection reflections silhouette
resolution quality hd high definition ultra photorealistic hyperrealistic unreal octane studio
steampunk cyberpunk fantasy medieval baroque minimalist noir documentary

one two three four five six seven eight nine ten hundred thousand first second third last next
half many several dozen pair
`

/** The vocabulary word list, in id order (repeats removed later). */
export const BUILTIN_WORDS: readonly string[] = Object.freeze(WORDS.split(/\s+/).filter(w => w !== ''))

/** Every token of the built-in vocabulary, index = id. */
export function builtinVocabulary (): string[] {
  const tokens = [
    PAD_TOKEN, EOS_TOKEN, UNK_TOKEN,
    ...LETTERS, ...DIGITS, ...PUNCTUATION,
    ...[...LETTERS].map(c => `##${c}`),
    ...SUFFIXES.map(s => `##${s}`),
    ...BUILTIN_WORDS
  ]
  const seen = new Set<string>()
  const out: string[] = []
  for (const t of tokens) {
    if (seen.has(t)) continue
    seen.add(t)
    out.push(t)
  }
  return out
}

/** Number of ids of the built-in tokenizer (the encoder's vocabSize). */
export const BUILTIN_VOCAB_SIZE = builtinVocabulary().length

/** A HuggingFace tokenizer.json, as a plain object (JSON.stringify it to write). */
export type TokenizerJson = Record<string, unknown>

/**
 * The built-in tokenizer.json. Deterministic: every call returns the same
 * object, and `JSON.stringify` of it the same bytes.
 */
export function builtinTokenizerJson (): TokenizerJson {
  const vocab: Record<string, number> = {}
  builtinVocabulary().forEach((t, i) => { vocab[t] = i })
  const special = (id: number, content: string): Record<string, unknown> =>
    ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  return {
    version: '1.0',
    truncation: null,
    padding: {
      strategy: 'BatchLongest',
      direction: 'Right',
      pad_to_multiple_of: null,
      pad_id: PAD_ID,
      pad_type_id: 0,
      pad_token: PAD_TOKEN
    },
    added_tokens: [special(PAD_ID, PAD_TOKEN), special(EOS_ID, EOS_TOKEN), special(UNK_ID, UNK_TOKEN)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFKD' }, { type: 'StripAccents' }, { type: 'Lowercase' }]
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'BertPreTokenizer' }, { type: 'Digits', individual_digits: true }]
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: EOS_TOKEN, type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: EOS_TOKEN, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: EOS_TOKEN, type_id: 0 } }
      ],
      special_tokens: { [EOS_TOKEN]: { id: EOS_TOKEN, ids: [EOS_ID], tokens: [EOS_TOKEN] } }
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: UNK_TOKEN,
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab
    }
  }
}
